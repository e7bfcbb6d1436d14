/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* The interface of Linux's ferry_msgq module (linux/modules/ferry_msgq.c) to
 * user space: /dev/ferry-msgqN, one per msgq device. The device itself is
 * specified in docs/devices/msgq.md and include/ferry/msgq.h; status codes
 * (MSGQ_OK, MSGQ_E_*), transfer modes (MSGQ_SEND_COPY, ...), MSGQ_HOW_* and
 * MSGQ_RECV_REMAPPED are the device's, passed through unchanged.
 *
 * One process at a time opens the device (a second open gets EBUSY): it
 * owns every send slot and every message received while it has it open;
 * closing gives the held messages back.
 *
 * mmap: offset 0 maps the send region (read-write, send_slots * page_size
 * bytes), offset recv_offset the receive region (read-only; PROT_WRITE is
 * refused). A mapping lies inside one region, and must be MAP_SHARED. The
 * pages of a region are the device's page window (BAR 2): what the sender
 * wrote into a slot is what the device moves.
 *
 * Sending: write the message into one or more consecutive send slots, then
 * FERRY_MSGQ_IOC_SEND names (dest, first slot, len, mode). After a
 * remapped send completes the slots hold other pages (zeroes, or what this
 * VM wrote there earlier); after a copied one they still hold the message.
 * Until its status is known (a send is "in flight") the slots must not be
 * written.
 *
 * Receiving: FERRY_MSGQ_IOC_RECV returns messages (sender's VM id as the
 * device vouches for it, length, first receive slot, pages), each readable
 * in the receive mapping at slot * page_size until returned by a later
 * FERRY_MSGQ_IOC_RECV's return list.
 *
 * poll/epoll: EPOLLIN when a message is waiting, EPOLLOUT when a send can
 * be posted, EPOLLRDBAND when send completions are waiting to be reaped
 * (FERRY_MSGQ_IOC_REAP); EPOLLERR|EPOLLHUP once the device is gone or
 * needs a reset.
 *
 * The system calls cost what they cost on the host; every call takes a
 * batch, so a program can move many messages per call. */
#ifndef FERRY_MSGQ_UAPI_H
#define FERRY_MSGQ_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define FERRY_MSGQ_NAME_LEN  32
#define FERRY_MSGQ_MAX_PEERS 16

struct ferry_msgq_peer {
	__u32 vm_id;
	char name[FERRY_MSGQ_NAME_LEN];         /* NUL-terminated */
};

/* FERRY_MSGQ_IOC_INFO: the device's configuration, checked by the driver. */
struct ferry_msgq_info {
	__u32 vm_id;                            /* this VM's id, what receivers see as src */
	__u32 page_size;                        /* slot size: 4096 or 2 MiB */
	__u32 send_slots, recv_slots;
	__u32 max_msg_pages;                    /* longest message, in pages */
	__u32 copy_threshold;                   /* adaptive sends below this many bytes are copied */
	__u32 poll_us;                          /* deferred sends are picked up within this */
	__u32 nr_peers;
	struct ferry_msgq_peer peers[FERRY_MSGQ_MAX_PEERS]; /* the VMs this VM may send to */
	__u64 send_offset;                      /* mmap offset of the send region (0) */
	__u64 recv_offset;                      /* mmap offset of the receive region */
	__u32 max_in_flight;                    /* sends posted and not yet reaped, at most */
	__u32 reserved;
};

/* One send. */
struct ferry_msgq_send {
	__u32 dest;                             /* receiver's VM id */
	__u32 slot;                             /* first send slot of the message */
	__u32 len;                              /* bytes, from the start of the slot */
	__u32 mode;                             /* MSGQ_SEND_ADAPTIVE, _COPY or _REMAP */
	__u32 cookie;                           /* echoed in the completion and to the receiver */
	__u8 status;                            /* out (with FERRY_MSGQ_WAIT): MSGQ_OK, MSGQ_E_*, or
	                                         * FERRY_MSGQ_PENDING */
	__u8 how;                               /* out: MSGQ_HOW_* */
	__u16 reserved;
};
#define FERRY_MSGQ_PENDING 0xff

/* FERRY_MSGQ_IOC_SEND flags. */
#define FERRY_MSGQ_IMMEDIATE (1u << 0)  /* ring the doorbell once, after posting the batch:
                                         * the device handles it before the call returns.
                                         * Without it the sends are deferred: the device
                                         * takes them at the VM's next exit or within poll_us */
#define FERRY_MSGQ_WAIT      (1u << 1)  /* wait (up to timeout_ms) for every status; without
                                         * it completions are reaped with FERRY_MSGQ_IOC_REAP */

struct ferry_msgq_send_batch {
	__u64 sends;                            /* user address of count struct ferry_msgq_send */
	__u32 count;                            /* in: entries; out: how many were posted */
	__u32 flags;                            /* FERRY_MSGQ_IMMEDIATE, FERRY_MSGQ_WAIT */
	__s32 timeout_ms;                       /* with WAIT: -1 forever */
	__u32 reserved;
};

/* A finished send, from FERRY_MSGQ_IOC_REAP. */
struct ferry_msgq_done {
	__u32 cookie;
	__u32 slot;                             /* the send's first slot, now free to write */
	__u32 len;
	__u8 status;                            /* MSGQ_OK or MSGQ_E_* */
	__u8 how;                               /* MSGQ_HOW_* */
	__u16 reserved;
};

struct ferry_msgq_reap {
	__u64 dones;                            /* user address of max struct ferry_msgq_done */
	__u32 max;
	__u32 count;                            /* out */
	__s32 timeout_ms;                       /* 0: do not wait; -1: forever */
	__u32 reserved;
};

/* A received message. */
struct ferry_msgq_msg {
	__u32 src;                              /* sender's VM id, added by the device */
	__u32 flags;                            /* MSGQ_RECV_REMAPPED */
	__u32 len;
	__u32 slot;                             /* first receive slot */
	__u32 nr_pages;
	__u32 cookie;                           /* the sender's */
	__u64 offset;                           /* slot * page_size: where it starts in the receive mapping */
};

/* A message given back: exactly a (slot, nr_pages) that RECV returned. */
struct ferry_msgq_return {
	__u32 slot;
	__u32 nr_pages;
};

struct ferry_msgq_recv {
	__u64 returns;                          /* user address of nr_returns struct ferry_msgq_return,
	                                         * given back before receiving */
	__u32 nr_returns;
	__u32 flags;                            /* FERRY_MSGQ_IMMEDIATE: hand the returns (these and
	                                         * any earlier ones given without it) to the device
	                                         * now (a doorbell); otherwise it takes them at its
	                                         * next poll, or when a sender needs the room */
	__u64 msgs;                             /* user address of max struct ferry_msgq_msg */
	__u32 max;                              /* 0: only return */
	__u32 count;                            /* out */
	__s32 timeout_ms;                       /* 0: do not wait; -1: forever */
	__u32 reserved;
};

/* FERRY_MSGQ_IOC_STATS: what the driver saw. */
struct ferry_msgq_stats {
	__u64 posted, immediate_batches, completed, refused;
	__u64 received, returned_pages, bad_headers, bad_returns;
	__u64 recv_interrupts, send_interrupts;
};

#define FERRY_MSGQ_IOC_MAGIC 0xf7
#define FERRY_MSGQ_IOC_INFO  _IOR(FERRY_MSGQ_IOC_MAGIC, 0, struct ferry_msgq_info)
#define FERRY_MSGQ_IOC_SEND  _IOWR(FERRY_MSGQ_IOC_MAGIC, 1, struct ferry_msgq_send_batch)
#define FERRY_MSGQ_IOC_REAP  _IOWR(FERRY_MSGQ_IOC_MAGIC, 2, struct ferry_msgq_reap)
#define FERRY_MSGQ_IOC_RECV  _IOWR(FERRY_MSGQ_IOC_MAGIC, 3, struct ferry_msgq_recv)
#define FERRY_MSGQ_IOC_STATS _IOR(FERRY_MSGQ_IOC_MAGIC, 4, struct ferry_msgq_stats)

#endif
