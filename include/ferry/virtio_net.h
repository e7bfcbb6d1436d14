/* virtio-net (device type VIRTIO_ID_NET, virtio 1.2 section 5.1): feature
 * bits, the device configuration layout, the per-packet header and the
 * control queue's commands. All fields are little-endian. Shared by ferry's
 * device and ferry-guest's driver. */
#ifndef FERRY_VIRTIO_NET_H
#define FERRY_VIRTIO_NET_H

#include <stdint.h>
#include <ferry/virtio.h>

/* Feature bits (VIRTIO_F_VERSION_1, EVENT_IDX etc. are in virtio.h). */
#define VIRTIO_NET_F_CSUM                0   /* device takes partially checksummed packets */
#define VIRTIO_NET_F_GUEST_CSUM          1   /* driver takes partially checksummed packets */
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU                 3   /* config.mtu is valid */
#define VIRTIO_NET_F_MAC                 5   /* config.mac is valid */
#define VIRTIO_NET_F_GUEST_TSO4          7
#define VIRTIO_NET_F_GUEST_TSO6          8
#define VIRTIO_NET_F_GUEST_ECN           9
#define VIRTIO_NET_F_GUEST_UFO           10
#define VIRTIO_NET_F_HOST_TSO4           11
#define VIRTIO_NET_F_HOST_TSO6           12
#define VIRTIO_NET_F_HOST_ECN            13
#define VIRTIO_NET_F_HOST_UFO            14
#define VIRTIO_NET_F_MRG_RXBUF           15  /* a packet may span several receive buffers */
#define VIRTIO_NET_F_STATUS              16  /* config.status is valid */
#define VIRTIO_NET_F_CTRL_VQ             17  /* a control queue exists */
#define VIRTIO_NET_F_CTRL_RX             18
#define VIRTIO_NET_F_CTRL_VLAN           19
#define VIRTIO_NET_F_CTRL_RX_EXTRA       20
#define VIRTIO_NET_F_GUEST_ANNOUNCE      21
#define VIRTIO_NET_F_MQ                  22  /* several queue pairs (needs CTRL_VQ) */
#define VIRTIO_NET_F_CTRL_MAC_ADDR       23
#define VIRTIO_NET_F_NOTF_COAL           53
#define VIRTIO_NET_F_GUEST_USO4          54
#define VIRTIO_NET_F_GUEST_USO6          55
#define VIRTIO_NET_F_HOST_USO            56
#define VIRTIO_NET_F_HASH_REPORT         57
#define VIRTIO_NET_F_GUEST_HDRLEN        59
#define VIRTIO_NET_F_RSS                 60
#define VIRTIO_NET_F_RSC_EXT             61
#define VIRTIO_NET_F_STANDBY             62
#define VIRTIO_NET_F_SPEED_DUPLEX        63

/* config.status bits. */
#define VIRTIO_NET_S_LINK_UP  1
#define VIRTIO_NET_S_ANNOUNCE 2

/* Device configuration. Fields past mtu exist only with the features that
 * define them; a driver reads no further than it needs. */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;                /* VIRTIO_NET_S_*, with VIRTIO_NET_F_STATUS */
	uint16_t max_virtqueue_pairs;   /* with VIRTIO_NET_F_MQ or RSS */
	uint16_t mtu;                   /* with VIRTIO_NET_F_MTU */
	uint32_t speed;                 /* Mb/s, with VIRTIO_NET_F_SPEED_DUPLEX */
	uint8_t duplex;
	uint8_t rss_max_key_size;
	uint16_t rss_max_indirection_table_length;
	uint32_t supported_hash_types;
} __attribute__((packed));

#define VIRTIO_NET_CFG_MAC       0
#define VIRTIO_NET_CFG_STATUS    6
#define VIRTIO_NET_CFG_MAX_PAIRS 8
#define VIRTIO_NET_CFG_MTU       10
#define VIRTIO_NET_CFG_SPEED     12
_Static_assert(sizeof(struct virtio_net_config) == 24, "virtio_net_config layout");

/* Every buffer on a receive or transmit queue starts with this header. With
 * VIRTIO_F_VERSION_1 it is 12 bytes whether or not MRG_RXBUF is negotiated;
 * num_buffers is the number of receive buffers a packet took (1 without
 * MRG_RXBUF) and is ignored on transmit. */
struct virtio_net_hdr {
	uint8_t flags;        /* VIRTIO_NET_HDR_F_* */
	uint8_t gso_type;     /* VIRTIO_NET_HDR_GSO_* */
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_net_hdr) == 12, "virtio_net_hdr layout");

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1  /* checksum from csum_start, stored at csum_offset */
#define VIRTIO_NET_HDR_F_DATA_VALID 2  /* receive: checksum already verified */
#define VIRTIO_NET_HDR_F_RSC_INFO   4

#define VIRTIO_NET_HDR_GSO_NONE   0
#define VIRTIO_NET_HDR_GSO_TCPV4  1
#define VIRTIO_NET_HDR_GSO_UDP    3
#define VIRTIO_NET_HDR_GSO_TCPV6  4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#define VIRTIO_NET_HDR_GSO_ECN    0x80

/* Queue numbering: receiveq1, transmitq1, ..., receiveqN, transmitqN, then
 * the control queue (N = max_virtqueue_pairs with MQ, else 1). */
#define VIRTIO_NET_RXQ(pair)     (2u * (pair))
#define VIRTIO_NET_TXQ(pair)     (2u * (pair) + 1)
#define VIRTIO_NET_CTRLQ(npairs) (2u * (npairs))

/* Without MRG_RXBUF or guest offloads a receive buffer must hold a header
 * and a 1514-byte frame (spec 5.1.6.3.1): 1526 bytes; with MTU, mtu + 14 + 12. */
#define VIRTIO_NET_MIN_RX_BUF 1526

/* Control queue: a command is [class, command][data...] (device-readable),
 * then one device-writable ack byte. */
struct virtio_net_ctrl_hdr {
	uint8_t class;
	uint8_t cmd;
} __attribute__((packed));
#define VIRTIO_NET_OK  0
#define VIRTIO_NET_ERR 1

#define VIRTIO_NET_CTRL_RX              0
#define VIRTIO_NET_CTRL_RX_PROMISC      0
#define VIRTIO_NET_CTRL_RX_ALLMULTI     1
#define VIRTIO_NET_CTRL_MAC             1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET   0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET    1
#define VIRTIO_NET_CTRL_ANNOUNCE        3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK    0
#define VIRTIO_NET_CTRL_MQ              4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0   /* data: le16 virtqueue_pairs */
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN 1
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX 0x8000

/* ---- ferry's zero-copy feature (docs/devices/net.md) ---------------------
 * A driver that accepts VIRTIO_NET_F_FERRY_ZC gets, besides queue pair 0
 * (which works as in any virtio-net device), FERRY_ZC_CHANNELS channels,
 * each reserved for one co-resident peer at a time. BAR 2 holds them, as two
 * virtio shared memory regions: id 0 the transmit areas, id 1 the receive
 * areas (read-only to the guest: the device refuses writes there).
 *
 * When ferry sees this VM send to a co-resident VM whose driver also took
 * the feature (the cross-talk detector), it binds a channel of each: it maps
 * this VM's transmit area and the peer's receive area onto the same memory,
 * and the peer's transmit area and this VM's receive area onto another (the
 * dynamic memory remapper), sets the channel's state to BOUND with the
 * peer's MAC and VM id, bumps `generation` and signals a config change. The
 * driver then sends frames for that MAC on the channel, and nobody copies
 * them on the way: the sender writes a frame into a slot of its transmit
 * area, which is the peer's receive area.
 *
 * A bound channel is a ring per direction. Each area starts with a struct
 * ferry_zc_ring that only the area's writer writes and the peer reads (in
 * its receive area): `prod` counts the frames published in this area, `cons`
 * the frames consumed from the peer's area. Because the peer's head register
 * is mapped onto the sender's tail register, publishing a frame is moving
 * the receiver's head: no exit, no descriptor, no interrupt while both sides
 * poll. Slot i % FERRY_ZC_RING_SLOTS holds frame i: a little-endian u32
 * length, 4 reserved bytes, then the Ethernet frame (at most
 * FERRY_ZC_FRAME_MAX bytes).
 *   sender:   while prod - peer.cons == FERRY_ZC_RING_SLOTS the ring is full;
 *             write the slot; then store prod + 1 (release).
 *   receiver: while peer.prod != cons, read slot cons (copy the frame out:
 *             its sender can still write it), then store cons + 1 (release).
 * A side about to sleep sets wake_rx (waiting for frames) or wake_tx
 * (waiting for room) in its own ring to a value that changes with every
 * sleep (never 0), then looks again, and clears it when awake. The other
 * side, after publishing (consuming), rings the channel's doorbell once per
 * such value: a write to the notify address of queue
 * FERRY_ZC_DOORBELL_QUEUE + channel. ferry answers it with an interrupt on
 * the peer's vector for that queue (the driver assigns one with
 * queue_msix_vector, as for any queue; the queue itself is never enabled) -
 * the receive interrupt and the transmit-complete interrupt of the claims.
 * A full ring is waited on briefly; then the frame is dropped, as a NIC with
 * a full queue does.
 * A channel going DRAINING takes no new frames: the driver sets `closed` in
 * its ring and waits until the peer has read its last frames before it
 * sends to that peer on queue pair 0. ferry maps the areas back to private
 * memory once both sides have closed and both rings are read, or at once if
 * the peer went away, a side does not close within a second, or a receiver
 * read nothing for half a second while its sender's ring was full. Each
 * area keeps its contents when it goes private, and ferry writes
 * `unbound_mark` into the receive area: the driver reads the frames left
 * there before queue pair 0's frames from after the mark, and ferry binds
 * the channel again only once they are read (or after a second).
 * Every index and length read from the peer's area is untrusted: a receiver
 * checks peer.prod - cons <= FERRY_ZC_RING_SLOTS and the length of each
 * frame, and copies the frame out before it reads it. */
#define VIRTIO_NET_F_FERRY_ZC 58

#define FERRY_ZC_CHANNELS   8
#define FERRY_ZC_SLOT_SIZE  2048u
#define FERRY_ZC_RING_SLOTS 254u   /* after the ring's header page */
#define FERRY_ZC_AREA_SIZE  (512ull << 10)
#define FERRY_ZC_SLOTS_OFFSET 4096u
#define FERRY_ZC_FRAME_MAX  (FERRY_ZC_SLOT_SIZE - 8)
#define FERRY_ZC_BAR       2
#define FERRY_ZC_SHM_TX    0   /* shared memory region ids */
#define FERRY_ZC_SHM_RX    1
/* BAR 2: transmit areas of channels 0..N-1, then their receive areas. */
#define FERRY_ZC_TX_OFFSET(c) ((uint64_t)(c) * FERRY_ZC_AREA_SIZE)
#define FERRY_ZC_RX_OFFSET(c) ((uint64_t)(FERRY_ZC_CHANNELS + (c)) * FERRY_ZC_AREA_SIZE)
#define FERRY_ZC_BAR_SIZE     (2ull * FERRY_ZC_CHANNELS * FERRY_ZC_AREA_SIZE)
#define FERRY_ZC_SLOT(area, i) ((uint8_t *)(area) + FERRY_ZC_SLOTS_OFFSET + \
				(uint64_t)((i) % FERRY_ZC_RING_SLOTS) * FERRY_ZC_SLOT_SIZE)
/* The queue whose notify address is the channels' doorbell (and whose
 * MSI-X vector the channel interrupts use): queue 2, which queue pair 1
 * would have, so that a driver sets it up like any queue. */
#define FERRY_ZC_DOORBELL_QUEUE 2u

struct ferry_zc_ring {
	uint32_t prod;            /* frames published in this area */
	uint32_t cons;            /* frames consumed from the peer's area */
	uint32_t wake_rx;         /* non-zero: sleeping until a frame arrives */
	uint32_t wake_tx;         /* non-zero: sleeping until the peer makes room */
	uint32_t closed;          /* non-zero: this side publishes nothing more (it saw DRAINING) */
	/* Written by ferry into a receive area when its binding ends (the area
	 * is then the receiver's private copy): FERRY_ZC_MARK_VALID | the
	 * receive queue 0 used index at that moment. Queue 0 frames before it
	 * precede the area's unread frames; those after it follow them. */
	uint32_t unbound_mark;
	uint8_t pad[40];
};
#define FERRY_ZC_MARK_VALID 0x10000u
_Static_assert(sizeof(struct ferry_zc_ring) == 64, "ferry_zc_ring is one cache line");

#define FERRY_ZC_UNBOUND  0
#define FERRY_ZC_BOUND    1
#define FERRY_ZC_DRAINING 2   /* being unbound: send nothing new on it */

struct ferry_zc_channel {
	uint8_t peer_mac[6];
	uint8_t state;            /* FERRY_ZC_* */
	uint8_t epoch;            /* changes with every binding: rings start again from zero */
	uint32_t peer_vm_id;      /* the VM on the other end (its position in the config, from 1) */
} __attribute__((packed));

/* In the device configuration at FERRY_ZC_CFG_OFFSET (past every standard
 * field), with VIRTIO_NET_F_FERRY_ZC. */
#define FERRY_ZC_CFG_OFFSET 64
struct ferry_zc_config {
	uint32_t channels;        /* FERRY_ZC_CHANNELS */
	uint32_t slots;           /* FERRY_ZC_RING_SLOTS */
	uint32_t slot_size;       /* FERRY_ZC_SLOT_SIZE */
	uint32_t generation;      /* changes whenever chan[] does */
	struct ferry_zc_channel chan[FERRY_ZC_CHANNELS];
} __attribute__((packed));

/* The whole device configuration of ferry's virtio-net. */
struct ferry_net_config {
	struct virtio_net_config std;
	uint8_t pad[FERRY_ZC_CFG_OFFSET - sizeof(struct virtio_net_config)];
	struct ferry_zc_config zc;
} __attribute__((packed));
_Static_assert(sizeof(struct ferry_zc_channel) == 12, "ferry_zc_channel layout");
_Static_assert(__builtin_offsetof(struct ferry_net_config, zc) == FERRY_ZC_CFG_OFFSET, "ferry zc config offset");

#endif
