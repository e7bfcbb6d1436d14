/* Virtio 1.x over PCI (modern transport) and the split virtqueue, as in the
 * OASIS virtio specification 1.2. All fields are little-endian. Shared by
 * ferry's devices and ferry-guest's drivers. */
#ifndef FERRY_VIRTIO_H
#define FERRY_VIRTIO_H

#include <stdint.h>

/* Device types (PCI device ID = 0x1040 + type). */
#define VIRTIO_ID_NET       1
#define VIRTIO_ID_BLOCK     2
#define VIRTIO_ID_CONSOLE   3
#define VIRTIO_ID_RNG       4
#define VIRTIO_ID_BALLOON   5
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Transport feature bits. */
#define VIRTIO_F_INDIRECT_DESC  28
#define VIRTIO_F_EVENT_IDX      29
#define VIRTIO_F_VERSION_1      32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* Vendor-specific PCI capability describing one virtio structure. */
struct virtio_pci_cap {
	uint8_t cap_vndr;   /* PCI_CAP_ID_VNDR */
	uint8_t cap_next;
	uint8_t cap_len;
	uint8_t cfg_type;   /* VIRTIO_PCI_CAP_* */
	uint8_t bar;
	uint8_t id;
	uint8_t padding[2];
	uint32_t offset;    /* within the BAR */
	uint32_t length;
};
struct virtio_pci_notify_cap {
	struct virtio_pci_cap cap;
	uint32_t notify_off_multiplier;
};
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5
#define VIRTIO_PCI_CAP_SHARED_MEMORY_CFG 8

/* A shared memory region (cfg_type 8): cap.id names the region; 64-bit
 * offset and length within cap.bar. */
struct virtio_pci_cap64 {
	struct virtio_pci_cap cap;
	uint32_t offset_hi;
	uint32_t length_hi;
};

/* Common configuration structure: register offsets. */
#define VIRTIO_PCI_COMMON_DFSELECT      0x00  /* le32 device_feature_select */
#define VIRTIO_PCI_COMMON_DF            0x04  /* le32 device_feature */
#define VIRTIO_PCI_COMMON_GFSELECT      0x08  /* le32 driver_feature_select */
#define VIRTIO_PCI_COMMON_GF            0x0c  /* le32 driver_feature */
#define VIRTIO_PCI_COMMON_MSIX          0x10  /* le16 config_msix_vector */
#define VIRTIO_PCI_COMMON_NUMQ          0x12  /* le16 num_queues */
#define VIRTIO_PCI_COMMON_STATUS        0x14  /* u8 device_status */
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15  /* u8 config_generation */
#define VIRTIO_PCI_COMMON_Q_SELECT      0x16  /* le16 */
#define VIRTIO_PCI_COMMON_Q_SIZE        0x18  /* le16 */
#define VIRTIO_PCI_COMMON_Q_MSIX        0x1a  /* le16 */
#define VIRTIO_PCI_COMMON_Q_ENABLE      0x1c  /* le16 */
#define VIRTIO_PCI_COMMON_Q_NOFF        0x1e  /* le16 queue_notify_off */
#define VIRTIO_PCI_COMMON_Q_DESCLO      0x20  /* le64 queue_desc */
#define VIRTIO_PCI_COMMON_Q_DESCHI      0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO     0x28  /* le64 queue_driver */
#define VIRTIO_PCI_COMMON_Q_AVAILHI     0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO      0x30  /* le64 queue_device */
#define VIRTIO_PCI_COMMON_Q_USEDHI      0x34
#define VIRTIO_PCI_COMMON_SIZE          0x38

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* ISR status bits (read clears). */
#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2

/* Split virtqueue. */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];  /* then le16 used_event when EVENT_IDX */
};
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};
struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];  /* then le16 avail_event when EVENT_IDX */
};
#define VRING_USED_F_NO_NOTIFY 1

#define VIRTQ_MAX_SIZE 32768

/* With VIRTIO_F_EVENT_IDX the driver writes used_event (after the avail
 * ring) and the device avail_event (after the used ring): "notify me when
 * you move your index past this one". Whether moving an index from old to
 * new_idx crosses event_idx (virtio 1.2, 2.7.10): */
static inline int vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

/* Byte sizes of the three parts for a queue of n entries (n a power of 2). */
#define VRING_DESC_BYTES(n)  (16ull * (n))
#define VRING_AVAIL_BYTES(n) (6ull + 2ull * (n))
#define VRING_USED_BYTES(n)  (6ull + 8ull * (n))

/* virtio-balloon (device type 5). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON    4
#define VIRTIO_BALLOON_F_REPORTING      5
#define VIRTIO_BALLOON_PFN_SHIFT        12

struct virtio_balloon_config {
	uint32_t num_pages;  /* target, in 4 KiB pages; written by the device */
	uint32_t actual;     /* written by the driver */
	uint32_t free_page_hint_cmd_id;
	uint32_t poison_val;
};
#define VIRTIO_BALLOON_S_SWAP_IN  0
#define VIRTIO_BALLOON_S_SWAP_OUT 1
#define VIRTIO_BALLOON_S_MAJFLT   2
#define VIRTIO_BALLOON_S_MINFLT   3
#define VIRTIO_BALLOON_S_MEMFREE  4
#define VIRTIO_BALLOON_S_MEMTOT   5
#define VIRTIO_BALLOON_S_AVAIL    6
#define VIRTIO_BALLOON_S_CACHES   7
#define VIRTIO_BALLOON_S_HTLB_PGALLOC 8
#define VIRTIO_BALLOON_S_HTLB_PGFAIL  9
#define VIRTIO_BALLOON_S_NR       10
struct virtio_balloon_stat {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

#endif
