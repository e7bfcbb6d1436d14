// SPDX-License-Identifier: GPL-2.0
/*
 * ferry_msgq: Linux driver for ferry's message-queue device (virtio type
 * 0xf7, PCI 1af4:1137; docs/devices/msgq.md, include/ferry/msgq.h), and its
 * character device /dev/ferry-msgqN for user space
 * (linux/include/uapi/ferry_msgq.h).
 *
 * The data path is user space's: it maps the device's page window (BAR 2)
 * and writes and reads messages there; this driver only carries requests
 * and answers between the device's three queues and the process. Every
 * call takes a batch, and queue interrupts are enabled only while someone
 * waits, because on a host whose KVM interprets guest ring 0 each interrupt
 * and each system call costs tens to hundreds of microseconds.
 *
 * Locking: one spinlock per device covers the three virtqueues and all the
 * bookkeeping; nothing sleeps under it. Doorbells (the device's exits) are
 * rung after dropping it.
 */
#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/wait.h>

#include <ferry/msgq.h>
#include "../include/uapi/ferry_msgq.h"

#define SEND_MAX_BATCH   1024u  /* sends per call */
#define RECV_MAX_BATCH   1024u  /* messages per call */
#define RETURN_MAX_BATCH 1024u  /* returns per call */
#define MAX_IN_FLIGHT    1024u  /* sends posted and not yet reaped */
#define RET_BUF_ENTRIES  256u   /* the device takes at most 256 entries per return buffer */
#define NR_RET_BUFS      16u
#define MAX_DEVICES      8
/* Batches this small use the stack: on a host that interprets guest ring
 * 0, an allocation costs more than the rest of a call. */
#define SMALL_BATCH      8

enum ctx_state { CTX_FREE, CTX_POSTED, CTX_DONE };

/* One send: what the device reads and writes lives in guest RAM here. */
struct send_ctx {
	struct msgq_send_hdr hdr;
	struct msgq_send_status st;
	u32 slot, len;
	u8 state;
	bool waited;               /* a FERRY_MSGQ_WAIT caller collects it, not REAP */
	struct list_head link;     /* free list, or the reap list once done */
};

struct ret_buf {
	struct msgq_return e[RET_BUF_ENTRIES];
	bool in_flight;
};

struct fmq {
	struct kref ref;
	struct virtio_device *vdev;
	struct virtqueue *sendq, *recvq, *retq;
	struct msgq_config cfg;
	phys_addr_t window;        /* guest-physical address of BAR 2 */
	u64 send_bytes, recv_bytes;
	int index;
	char name[24];
	struct miscdevice misc;
	bool misc_registered;

	spinlock_t lock;
	wait_queue_head_t wq;
	bool dead;                 /* removed, or the device needs a reset */
	struct file *owner;        /* the one open file */
	struct mutex open_lock;

	struct send_ctx *ctx;
	unsigned int nr_ctx, in_flight;
	struct list_head free_ctx, reap;
	unsigned int nr_reap;
	unsigned int send_waiters;

	struct msgq_recv_hdr *rx;  /* header buffers posted on the receive queue */
	unsigned int nr_rx;
	struct ferry_msgq_msg *fifo; /* messages taken from the queue, not yet read */
	unsigned int fifo_head, fifo_len;
	u8 *covered;               /* per receive slot: part of a message we hold */
	u32 *held;                 /* per receive slot: nr_pages of a message user space holds */
	unsigned int recv_waiters;

	struct ret_buf *ret;
	unsigned int ret_waiters;
	bool ret_unrung;           /* returns posted since the last doorbell */

	struct ferry_msgq_stats stats;
};

static DEFINE_IDA(fmq_ida);

static void fmq_free(struct kref *ref)
{
	struct fmq *q = container_of(ref, struct fmq, ref);

	kfree(q->ctx);
	kfree(q->rx);
	kfree(q->fifo);
	kvfree(q->covered);
	kvfree(q->held);
	kfree(q->ret);
	ida_free(&fmq_ida, q->index);
	kfree(q);
}

/* ---- send completions ---------------------------------------------------- */

/* Takes finished sends from the send queue. Lock held. */
static void reap_sendq(struct fmq *q)
{
	struct send_ctx *c;
	unsigned int len;

	while ((c = virtqueue_get_buf(q->sendq, &len)) != NULL) {
		if (c < q->ctx || c >= q->ctx + q->nr_ctx || c->state != CTX_POSTED) {
			/* Not a token we gave: the ring is not ours any more. */
			dev_err_ratelimited(&q->vdev->dev, "send queue returned an unknown buffer\n");
			q->dead = true;
			break;
		}
		/* A device that wrote no status could not parse the chain. */
		if (len < sizeof(c->st)) {
			c->st.status = MSGQ_E_BAD_CHAIN;
			c->st.how = MSGQ_HOW_NONE;
		} else if (c->st.status >= MSGQ_E_MAX) {
			dev_err_ratelimited(&q->vdev->dev, "send status %u is not a status\n", c->st.status);
			c->st.status = MSGQ_E_BAD_CHAIN;
		}
		c->state = CTX_DONE;
		q->stats.completed++;
		if (c->st.status != MSGQ_OK)
			q->stats.refused++;
		if (!c->waited) {
			list_add_tail(&c->link, &q->reap);
			q->nr_reap++;
		}
	}
}

static void put_ctx(struct fmq *q, struct send_ctx *c)
{
	c->state = CTX_FREE;
	list_add(&c->link, &q->free_ctx);
	q->in_flight--;
}

/* ---- receiving ----------------------------------------------------------- */

static void post_rx(struct fmq *q, struct msgq_recv_hdr *h)
{
	struct scatterlist sg;

	sg_init_one(&sg, h, sizeof(*h));
	/* Cannot fail: the buffer came off this queue. No doorbell: the
	 * device takes receive buffers as messages arrive. */
	if (virtqueue_add_inbuf(q->recvq, &sg, 1, h, GFP_ATOMIC))
		q->stats.bad_headers++;
}

/* A header the device wrote must name slots inside the receive region that
 * hold no other message we have. */
static bool valid_rx(struct fmq *q, const struct msgq_recv_hdr *h, unsigned int len)
{
	u32 i;

	if (len < sizeof(*h) || !h->nr_pages || h->slot >= q->cfg.recv_slots ||
	    h->nr_pages > q->cfg.recv_slots - h->slot || !h->len ||
	    h->len > (u64)h->nr_pages * q->cfg.page_size)
		return false;
	for (i = 0; i < h->nr_pages; i++)
		if (q->covered[h->slot + i])
			return false;
	return true;
}

/* Moves delivered messages from the receive queue into the fifo, and
 * reposts their header buffers. Lock held. */
static void pull_recv(struct fmq *q)
{
	struct msgq_recv_hdr *h;
	unsigned int len;

	while (q->fifo_len < q->cfg.recv_slots && (h = virtqueue_get_buf(q->recvq, &len)) != NULL) {
		struct ferry_msgq_msg *m;
		u32 i;

		if (h < q->rx || h >= q->rx + q->nr_rx) {
			dev_err_ratelimited(&q->vdev->dev, "receive queue returned an unknown buffer\n");
			q->dead = true;
			return;
		}
		if (!valid_rx(q, h, len)) {
			q->stats.bad_headers++;
			dev_err_ratelimited(&q->vdev->dev, "bad receive header: slot %u, %u pages, %u bytes\n",
					    h->slot, h->nr_pages, h->len);
			post_rx(q, h);
			continue;
		}
		for (i = 0; i < h->nr_pages; i++)
			q->covered[h->slot + i] = 1;
		m = &q->fifo[(q->fifo_head + q->fifo_len++) % q->cfg.recv_slots];
		*m = (struct ferry_msgq_msg){
			.src = h->src, .flags = h->flags, .len = h->len, .slot = h->slot,
			.nr_pages = h->nr_pages, .cookie = h->cookie,
			.offset = (u64)h->slot * q->cfg.page_size,
		};
		q->stats.received++;
		post_rx(q, h);
	}
}

/* ---- returning received slots -------------------------------------------- */

static void reap_retq(struct fmq *q)
{
	struct ret_buf *b;
	unsigned int len; /* virtqueue_get_buf() always stores it */

	while ((b = virtqueue_get_buf(q->retq, &len)) != NULL) {
		if (b < q->ret || b >= q->ret + NR_RET_BUFS) {
			q->dead = true;
			return;
		}
		b->in_flight = false;
	}
}

static struct ret_buf *free_ret_buf(struct fmq *q)
{
	unsigned int i;

	reap_retq(q);
	for (i = 0; i < NR_RET_BUFS; i++)
		if (!q->ret[i].in_flight)
			return &q->ret[i];
	return NULL;
}

/* One-shot queue callbacks: whoever waits arms them; they disarm
 * themselves and wake everybody, who look again. Interrupt context. */
static void sendq_done(struct virtqueue *vq)
{
	struct fmq *q = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	q->stats.send_interrupts++;
	virtqueue_disable_cb(vq);
	reap_sendq(q);
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_interruptible_all(&q->wq);
}

static void recvq_done(struct virtqueue *vq)
{
	struct fmq *q = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	q->stats.recv_interrupts++;
	virtqueue_disable_cb(vq);
	pull_recv(q);
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_interruptible_all(&q->wq);
}

static void retq_done(struct virtqueue *vq)
{
	struct fmq *q = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	virtqueue_disable_cb(vq);
	reap_retq(q);
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_interruptible_all(&q->wq);
}

/* Arms a queue's callback; if buffers came in meanwhile, collect them now
 * (then nothing needs to wait). Lock held. */
static void arm(struct fmq *q, struct virtqueue *vq)
{
	if (!virtqueue_enable_cb(vq)) {
		virtqueue_disable_cb(vq);
		if (vq == q->sendq)
			reap_sendq(q);
		else if (vq == q->recvq)
			pull_recv(q);
		else
			reap_retq(q);
	}
}

static void check_broken(struct fmq *q)
{
	if (virtqueue_is_broken(q->sendq) || virtqueue_is_broken(q->recvq) || virtqueue_is_broken(q->retq))
		q->dead = true;
}

/* ---- file operations ----------------------------------------------------- */

static int fmq_open(struct inode *inode, struct file *f)
{
	struct fmq *q = container_of(f->private_data, struct fmq, misc);
	int err = 0;

	mutex_lock(&q->open_lock);
	if (q->owner)
		err = -EBUSY;
	else if (READ_ONCE(q->dead))
		err = -ENODEV;
	if (!err) {
		q->owner = f;
		kref_get(&q->ref);
		f->private_data = q;
	}
	mutex_unlock(&q->open_lock);
	return err ?: nonseekable_open(inode, f);
}

/* Gives every message user space holds back to the device, and forgets the
 * sends it never reaped. */
static int fmq_release(struct inode *inode, struct file *f)
{
	struct fmq *q = f->private_data;
	unsigned long flags;
	bool kick = false;
	u32 s = 0;

	spin_lock_irqsave(&q->lock, flags);
	while (!q->dead && s < q->cfg.recv_slots) {
		struct ret_buf *b = free_ret_buf(q);
		struct scatterlist sg;
		unsigned int n = 0;

		if (!b) {
			/* All out with the device: it takes them at this
			 * doorbell (ferry handles returns on the ringing vCPU). */
			virtqueue_kick(q->retq);
			if (!free_ret_buf(q))
				break;
			continue;
		}
		for (; s < q->cfg.recv_slots && n < RET_BUF_ENTRIES; s++) {
			u32 k, nr = q->held[s];

			if (!nr)
				continue;
			b->e[n++] = (struct msgq_return){ s, nr };
			for (k = 0; k < nr; k++)
				q->covered[s + k] = 0;
			q->held[s] = 0;
			q->stats.returned_pages += nr;
		}
		if (!n)
			break;
		sg_init_one(&sg, b->e, n * sizeof(b->e[0]));
		if (virtqueue_add_outbuf(q->retq, &sg, 1, b, GFP_ATOMIC))
			break;
		b->in_flight = true;
		kick = true;
	}
	/* Finished sends nobody will reap; posted ones are freed when they
	 * finish (they go to the reap list, which the next opener drains). */
	while (!list_empty(&q->reap)) {
		struct send_ctx *c = list_first_entry(&q->reap, struct send_ctx, link);

		list_del(&c->link);
		q->nr_reap--;
		put_ctx(q, c);
	}
	kick = kick && !q->dead && virtqueue_kick_prepare(q->retq);
	spin_unlock_irqrestore(&q->lock, flags);
	if (kick)
		virtqueue_notify(q->retq);
	mutex_lock(&q->open_lock);
	q->owner = NULL;
	mutex_unlock(&q->open_lock);
	kref_put(&q->ref, fmq_free);
	return 0;
}

static long do_info(struct fmq *q, void __user *arg)
{
	struct ferry_msgq_info info = {
		.vm_id = q->cfg.vm_id, .page_size = q->cfg.page_size,
		.send_slots = q->cfg.send_slots, .recv_slots = q->cfg.recv_slots,
		.max_msg_pages = q->cfg.max_msg_pages, .copy_threshold = q->cfg.copy_threshold,
		.poll_us = q->cfg.poll_us, .nr_peers = q->cfg.nr_peers,
		.send_offset = 0, .recv_offset = q->send_bytes, .max_in_flight = q->nr_ctx,
	};
	unsigned int i;

	for (i = 0; i < q->cfg.nr_peers; i++) {
		info.peers[i].vm_id = q->cfg.peers[i].vm_id;
		memcpy(info.peers[i].name, q->cfg.peers[i].name, FERRY_MSGQ_NAME_LEN);
	}
	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

/* Waits for cond (evaluated with the lock held, after arming vq's
 * callback) for up to timeout_ms (-1: forever). 0, -ETIMEDOUT,
 * -ERESTARTSYS or -ENODEV. */
#define WAIT_ARMED(q, vq, waiters, timeout_ms, cond)                                              \
	({                                                                                        \
		long __left = (timeout_ms) < 0 ? MAX_SCHEDULE_TIMEOUT : msecs_to_jiffies(timeout_ms); \
		long __r;                                                                         \
		unsigned long __f;                                                                \
		bool __ok;                                                                        \
		spin_lock_irqsave(&(q)->lock, __f);                                               \
		(q)->waiters++;                                                                   \
		spin_unlock_irqrestore(&(q)->lock, __f);                                          \
		__r = wait_event_interruptible_timeout((q)->wq, ({                                \
			spin_lock_irqsave(&(q)->lock, __f);                                       \
			if (!(q)->dead)                                                           \
				arm(q, vq);                                                       \
			__ok = (q)->dead || (cond);                                               \
			spin_unlock_irqrestore(&(q)->lock, __f);                                  \
			__ok; }), __left);                                                        \
		spin_lock_irqsave(&(q)->lock, __f);                                               \
		if (!--(q)->waiters && !(q)->dead)                                                \
			virtqueue_disable_cb(vq);                                                 \
		__ok = (q)->dead;                                                                 \
		spin_unlock_irqrestore(&(q)->lock, __f);                                          \
		__r < 0 ? __r : __ok ? -ENODEV : __r == 0 ? -ETIMEDOUT : 0;                       \
	})

static bool ctxs_done(struct send_ctx **posted, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (posted[i]->state != CTX_DONE)
			return false;
	return true;
}

static long do_send(struct fmq *q, void __user *arg)
{
	struct ferry_msgq_send s_small[SMALL_BATCH], *s = s_small;
	struct send_ctx *posted_small[SMALL_BATCH], **posted = posted_small;
	struct ferry_msgq_send_batch b;
	unsigned long flags;
	unsigned int i, n = 0;
	long err = 0;
	bool kick;

	if (copy_from_user(&b, arg, sizeof(b)))
		return -EFAULT;
	if (!b.count || b.count > SEND_MAX_BATCH || (b.flags & ~(FERRY_MSGQ_IMMEDIATE | FERRY_MSGQ_WAIT)))
		return -EINVAL;
	if (b.count > SMALL_BATCH) {
		s = kvmalloc_array(b.count, sizeof(*s), GFP_KERNEL);
		posted = kvmalloc_array(b.count, sizeof(*posted), GFP_KERNEL);
		if (!s || !posted) {
			err = -ENOMEM;
			goto out;
		}
	}
	if (copy_from_user(s, u64_to_user_ptr(b.sends), b.count * sizeof(*s))) {
		err = -EFAULT;
		goto out;
	}
	/* The driver checks only what keeps the descriptor inside the send
	 * region's start; the device checks everything else (destination,
	 * policy, length) and answers with a status. */
	for (i = 0; i < b.count; i++)
		if (s[i].slot >= q->cfg.send_slots || (s[i].mode & ~MSGQ_SEND_MODE_MASK) ||
		    (s[i].mode & MSGQ_SEND_MODE_MASK) > MSGQ_SEND_REMAP) {
			err = -EINVAL;
			goto out;
		}

	spin_lock_irqsave(&q->lock, flags);
	if (q->dead) {
		spin_unlock_irqrestore(&q->lock, flags);
		err = -ENODEV;
		goto out;
	}
	reap_sendq(q);
	for (; n < b.count && !list_empty(&q->free_ctx); n++) {
		struct send_ctx *c = list_first_entry(&q->free_ctx, struct send_ctx, link);
		phys_addr_t pa = q->window + (u64)s[n].slot * q->cfg.page_size;
		struct scatterlist hdr, payload, st, *sgs[3] = { &hdr, &payload, &st };

		c->hdr = (struct msgq_send_hdr){
			.dest = s[n].dest, .len = s[n].len, .cookie = s[n].cookie,
			.flags = s[n].mode | ((b.flags & FERRY_MSGQ_IMMEDIATE) ? MSGQ_SEND_DOORBELL : 0),
		};
		c->st = (struct msgq_send_status){ .status = FERRY_MSGQ_PENDING, .cookie = s[n].cookie };
		c->slot = s[n].slot;
		c->len = s[n].len;
		c->waited = b.flags & FERRY_MSGQ_WAIT;
		sg_init_one(&hdr, &c->hdr, sizeof(c->hdr));
		sg_init_one(&st, &c->st, sizeof(c->st));
		/* The payload is in the page window (BAR 2), which has no struct
		 * page; without VIRTIO_F_ACCESS_PLATFORM the ring takes the
		 * descriptor address as sg_phys(), which is only arithmetic on
		 * the pfn. A zero length still needs a one-byte buffer; the
		 * device refuses the send (MSGQ_E_TOO_LONG). */
		sg_init_table(&payload, 1);
		sg_set_page(&payload, pfn_to_page(PHYS_PFN(pa)), s[n].len ? s[n].len : 1, offset_in_page(pa));
		if (virtqueue_add_sgs(q->sendq, sgs, 2, 1, c, GFP_ATOMIC))
			break; /* ring full: the rest is not posted */
		list_del(&c->link);
		c->state = CTX_POSTED;
		q->in_flight++;
		posted[n] = c;
		q->stats.posted++;
	}
	kick = n && (b.flags & FERRY_MSGQ_IMMEDIATE) && virtqueue_kick_prepare(q->sendq);
	if (n && (b.flags & FERRY_MSGQ_IMMEDIATE))
		q->stats.immediate_batches++;
	spin_unlock_irqrestore(&q->lock, flags);
	if (!n) {
		err = -EAGAIN; /* every send slot of the driver is in flight: reap */
		goto out;
	}
	/* The doorbell: ferry handles every posted send on this vCPU before
	 * the write retires. ferry never asks msgq drivers not to notify, so
	 * kick_prepare only says no when a device does. */
	if (kick)
		virtqueue_notify(q->sendq);

	if (b.flags & FERRY_MSGQ_WAIT) {
		bool done;

		spin_lock_irqsave(&q->lock, flags);
		reap_sendq(q);
		done = ctxs_done(posted, n);
		spin_unlock_irqrestore(&q->lock, flags);
		/* Immediate sends are done when the doorbell write retires. */
		if (!done)
			err = WAIT_ARMED(q, q->sendq, send_waiters, b.timeout_ms, ctxs_done(posted, n));
		spin_lock_irqsave(&q->lock, flags);
		for (i = 0; i < n; i++) {
			struct send_ctx *c = posted[i];

			s[i].status = c->state == CTX_DONE ? c->st.status : FERRY_MSGQ_PENDING;
			s[i].how = c->state == CTX_DONE ? c->st.how : MSGQ_HOW_NONE;
			if (c->state == CTX_DONE) {
				put_ctx(q, c);
			} else {
				/* Still with the device: REAP reports it later. */
				c->waited = false;
			}
		}
		spin_unlock_irqrestore(&q->lock, flags);
		if (err == -ERESTARTSYS)
			err = -EINTR; /* sends were posted: do not restart them */
	} else {
		for (i = 0; i < n; i++) {
			s[i].status = FERRY_MSGQ_PENDING;
			s[i].how = MSGQ_HOW_NONE;
		}
	}
	b.count = n;
	if (copy_to_user(u64_to_user_ptr(b.sends), s, n * sizeof(*s)) || copy_to_user(arg, &b, sizeof(b)))
		err = -EFAULT;
out:
	if (s != s_small)
		kvfree(s);
	if (posted != posted_small)
		kvfree(posted);
	return err;
}

static long do_reap(struct fmq *q, void __user *arg)
{
	struct ferry_msgq_done d_small[SMALL_BATCH], *d = d_small;
	struct ferry_msgq_reap r;
	unsigned long flags;
	unsigned int n = 0;
	long err = 0;

	if (copy_from_user(&r, arg, sizeof(r)))
		return -EFAULT;
	if (!r.max || r.max > MAX_IN_FLIGHT)
		return -EINVAL;
	if (r.max > SMALL_BATCH) {
		d = kvmalloc_array(r.max, sizeof(*d), GFP_KERNEL);
		if (!d)
			return -ENOMEM;
	}
	spin_lock_irqsave(&q->lock, flags);
	reap_sendq(q);
	spin_unlock_irqrestore(&q->lock, flags);
	if (r.timeout_ms)
		err = WAIT_ARMED(q, q->sendq, send_waiters, r.timeout_ms, q->nr_reap > 0);
	if (err == -ETIMEDOUT)
		err = 0;
	spin_lock_irqsave(&q->lock, flags);
	while (n < r.max && !list_empty(&q->reap)) {
		struct send_ctx *c = list_first_entry(&q->reap, struct send_ctx, link);

		list_del(&c->link);
		q->nr_reap--;
		d[n++] = (struct ferry_msgq_done){
			.cookie = c->hdr.cookie, .slot = c->slot, .len = c->len,
			.status = c->st.status, .how = c->st.how,
		};
		put_ctx(q, c);
	}
	spin_unlock_irqrestore(&q->lock, flags);
	if (n)
		err = 0; /* what was reaped is reported, whatever the wait said */
	r.count = n;
	if (!err && (copy_to_user(u64_to_user_ptr(r.dones), d, n * sizeof(*d)) || copy_to_user(arg, &r, sizeof(r))))
		err = -EFAULT;
	if (d != d_small)
		kvfree(d);
	return err;
}

/* Gives back the messages user space names (each exactly as received),
 * all or none. Lock held. */
static long give_back(struct fmq *q, const struct ferry_msgq_return *r, unsigned int n, bool *kick)
{
	unsigned int i, done = 0;

	for (i = 0; i < n; i++)
		if (!r[i].nr_pages || r[i].slot >= q->cfg.recv_slots || q->held[r[i].slot] != r[i].nr_pages) {
			q->stats.bad_returns++;
			return -EINVAL;
		}
	/* Each message once, even if named twice in the list. */
	for (i = 0; i < n; i++) {
		u32 k;

		if (q->held[r[i].slot] != r[i].nr_pages)
			continue;
		q->held[r[i].slot] = 0;
		for (k = 0; k < r[i].nr_pages; k++)
			q->covered[r[i].slot + k] = 0;
	}
	while (done < n) {
		struct ret_buf *b = free_ret_buf(q);
		struct scatterlist sg;
		unsigned int m = min(n - done, RET_BUF_ENTRIES);

		if (!b) {
			/* Every buffer is with the device: ring so it takes
			 * them (ferry does, on this vCPU, before the write
			 * retires). */
			virtqueue_kick(q->retq);
			b = free_ret_buf(q);
			if (!b)
				return -EAGAIN;
		}
		for (i = 0; i < m; i++) {
			b->e[i] = (struct msgq_return){ r[done + i].slot, r[done + i].nr_pages };
			q->stats.returned_pages += r[done + i].nr_pages;
		}
		sg_init_one(&sg, b->e, m * sizeof(b->e[0]));
		if (virtqueue_add_outbuf(q->retq, &sg, 1, b, GFP_ATOMIC)) {
			virtqueue_kick(q->retq);
			reap_retq(q);
			if (virtqueue_add_outbuf(q->retq, &sg, 1, b, GFP_ATOMIC))
				return -EAGAIN;
		}
		b->in_flight = true;
		q->ret_unrung = true;
		done += m;
		*kick = true;
	}
	return 0;
}

static long do_recv(struct fmq *q, void __user *arg)
{
	struct ferry_msgq_return ret_small[SMALL_BATCH], *ret = ret_small;
	struct ferry_msgq_msg m_small[SMALL_BATCH], *m = m_small;
	struct ferry_msgq_recv r;
	unsigned long flags;
	unsigned int n = 0;
	bool kick = false;
	long err = 0;

	if (copy_from_user(&r, arg, sizeof(r)))
		return -EFAULT;
	if (r.nr_returns > RETURN_MAX_BATCH || r.max > RECV_MAX_BATCH || (r.flags & ~FERRY_MSGQ_IMMEDIATE))
		return -EINVAL;
	if (r.nr_returns > SMALL_BATCH) {
		ret = kvmalloc_array(r.nr_returns, sizeof(*ret), GFP_KERNEL);
		if (!ret)
			return -ENOMEM;
	}
	if (r.nr_returns) {
		if (copy_from_user(ret, u64_to_user_ptr(r.returns), r.nr_returns * sizeof(*ret))) {
			err = -EFAULT;
			goto out;
		}
	}
	if (r.max > SMALL_BATCH) {
		m = kvmalloc_array(r.max, sizeof(*m), GFP_KERNEL);
		if (!m) {
			err = -ENOMEM;
			goto out;
		}
	}
	spin_lock_irqsave(&q->lock, flags);
	err = q->dead ? -ENODEV : 0;
	if (!err && r.nr_returns) {
		/* Ringing happens with the lock held here only when every
		 * return buffer is still with the device (rare). */
		err = give_back(q, ret, r.nr_returns, &kick);
	}
	if (!err)
		pull_recv(q);
	/* IMMEDIATE hands over every return not rung for yet, also those of
	 * earlier calls without it. */
	kick = !err && (kick || q->ret_unrung) && (r.flags & FERRY_MSGQ_IMMEDIATE) &&
	       virtqueue_kick_prepare(q->retq);
	if (kick)
		q->ret_unrung = false;
	spin_unlock_irqrestore(&q->lock, flags);
	if (kick)
		virtqueue_notify(q->retq);
	if (err || !r.max)
		goto out;
	if (r.timeout_ms && !READ_ONCE(q->fifo_len))
		err = WAIT_ARMED(q, q->recvq, recv_waiters, r.timeout_ms, q->fifo_len > 0);
	if (err == -ETIMEDOUT)
		err = 0;
	spin_lock_irqsave(&q->lock, flags);
	while (n < r.max && q->fifo_len) {
		struct ferry_msgq_msg *x = &q->fifo[q->fifo_head];
		u32 k;

		m[n++] = *x;
		q->held[x->slot] = x->nr_pages;
		for (k = 0; k < x->nr_pages; k++)
			q->covered[x->slot + k] = 1;
		q->fifo_head = (q->fifo_head + 1) % q->cfg.recv_slots;
		q->fifo_len--;
	}
	spin_unlock_irqrestore(&q->lock, flags);
	if (n)
		err = 0;
	if (!err && copy_to_user(u64_to_user_ptr(r.msgs), m, n * sizeof(*m))) {
		/* The messages are held now; the caller cannot know them, so
		 * they stay held until the file is closed. */
		err = -EFAULT;
	}
out:
	r.count = n;
	if (!err && copy_to_user(arg, &r, sizeof(r)))
		err = -EFAULT;
	if (ret != ret_small)
		kvfree(ret);
	if (m != m_small)
		kvfree(m);
	return err;
}

static long fmq_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct fmq *q = f->private_data;
	void __user *p = (void __user *)arg;

	if (READ_ONCE(q->dead) && cmd != FERRY_MSGQ_IOC_STATS)
		return -ENODEV;
	switch (cmd) {
	case FERRY_MSGQ_IOC_INFO:
		return do_info(q, p);
	case FERRY_MSGQ_IOC_SEND:
		return do_send(q, p);
	case FERRY_MSGQ_IOC_REAP:
		return do_reap(q, p);
	case FERRY_MSGQ_IOC_RECV:
		return do_recv(q, p);
	case FERRY_MSGQ_IOC_STATS: {
		struct ferry_msgq_stats st;
		unsigned long flags;

		spin_lock_irqsave(&q->lock, flags);
		st = q->stats;
		spin_unlock_irqrestore(&q->lock, flags);
		return copy_to_user(p, &st, sizeof(st)) ? -EFAULT : 0;
	}
	default:
		return -ENOTTY;
	}
}

static __poll_t fmq_poll(struct file *f, poll_table *pt)
{
	struct fmq *q = f->private_data;
	unsigned long flags;
	__poll_t mask = 0;

	poll_wait(f, &q->wq, pt);
	spin_lock_irqsave(&q->lock, flags);
	if (q->dead) {
		spin_unlock_irqrestore(&q->lock, flags);
		return EPOLLERR | EPOLLHUP;
	}
	reap_sendq(q);
	pull_recv(q);
	if (!q->fifo_len)
		arm(q, q->recvq);
	if (q->fifo_len)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (!list_empty(&q->free_ctx))
		mask |= EPOLLOUT | EPOLLWRNORM;
	if (!q->nr_reap && q->in_flight)
		arm(q, q->sendq);
	if (q->nr_reap)
		mask |= EPOLLRDBAND;
	spin_unlock_irqrestore(&q->lock, flags);
	return mask;
}

static int fmq_mmap(struct file *f, struct vm_area_struct *vma)
{
	struct fmq *q = f->private_data;
	u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT, len = vma->vm_end - vma->vm_start;

	if (READ_ONCE(q->dead))
		return -ENODEV;
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (off < q->send_bytes) {
		if (len > q->send_bytes - off)
			return -EINVAL;
	} else {
		if (off - q->send_bytes >= q->recv_bytes || len > q->recv_bytes - (off - q->send_bytes))
			return -EINVAL;
		/* Received messages are read-only (the device enforces it
		 * too: writes there are ignored and counted). */
		if (vma->vm_flags & VM_WRITE)
			return -EPERM;
		vma->vm_flags &= ~VM_MAYWRITE;
	}
	vma->vm_flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
	/* Write-back, as ordinary memory: ferry backs the window with RAM. */
	return remap_pfn_range(vma, vma->vm_start, PHYS_PFN(q->window + off), len, vma->vm_page_prot);
}

static const struct file_operations fmq_fops = {
	.owner = THIS_MODULE,
	.open = fmq_open,
	.release = fmq_release,
	.unlocked_ioctl = fmq_ioctl,
	.poll = fmq_poll,
	.mmap = fmq_mmap,
	.llseek = no_llseek,
};

/* ---- probe and remove ---------------------------------------------------- */

static int read_config(struct fmq *q)
{
	struct virtio_device *vdev = q->vdev;
	struct virtio_shm_region send, recv;
	unsigned int i;

	/* 32-bit reads: a config read is an exit, and every field is 32-bit. */
	BUILD_BUG_ON(sizeof(q->cfg) % 4);
	__virtio_cread_many(vdev, 0, &q->cfg, sizeof(q->cfg) / 4, 4);
	if (q->cfg.page_size != 4096 && q->cfg.page_size != (2u << 20)) {
		dev_err(&vdev->dev, "page size %u is neither 4 KiB nor 2 MiB\n", q->cfg.page_size);
		return -EINVAL;
	}
	if (!q->cfg.send_slots || !q->cfg.recv_slots || q->cfg.send_slots > (1u << 20) ||
	    q->cfg.recv_slots > (1u << 20) || !q->cfg.max_msg_pages) {
		dev_err(&vdev->dev, "window of %u + %u slots\n", q->cfg.send_slots, q->cfg.recv_slots);
		return -EINVAL;
	}
	q->cfg.nr_peers = min_t(u32, q->cfg.nr_peers, MSGQ_MAX_PEERS);
	for (i = 0; i < q->cfg.nr_peers; i++)
		q->cfg.peers[i].name[MSGQ_NAME_LEN - 1] = '\0';
	q->send_bytes = (u64)q->cfg.send_slots * q->cfg.page_size;
	q->recv_bytes = (u64)q->cfg.recv_slots * q->cfg.page_size;
	/* The two regions, from the shared memory capabilities: the receive
	 * region must follow the send region, as the specification says. */
	if (!virtio_get_shm_region(vdev, &send, 0) || !virtio_get_shm_region(vdev, &recv, 1) ||
	    send.len < q->send_bytes || recv.len < q->recv_bytes || recv.addr != send.addr + q->send_bytes) {
		dev_err(&vdev->dev, "no page window of %llu + %llu bytes\n", q->send_bytes, q->recv_bytes);
		return -EINVAL;
	}
	q->window = send.addr;
	return 0;
}

static int fmq_probe(struct virtio_device *vdev)
{
	/* The first three queues: the fourth (MSGQ_QUEUE_RING_DOORBELL) is
	 * only for drivers of direct rings (MSGQ_F_RINGS), which this is not. */
	static const char * const names[] = { "send", "recv", "return" };
	vq_callback_t *callbacks[] = { sendq_done, recvq_done, retq_done };
	struct virtqueue *vqs[ARRAY_SIZE(names)];
	struct fmq *q;
	unsigned int i;
	int err;

	if (virtio_has_feature(vdev, VIRTIO_F_ACCESS_PLATFORM)) {
		/* Descriptors name the page window by physical address. */
		dev_err(&vdev->dev, "VIRTIO_F_ACCESS_PLATFORM is not supported\n");
		return -EINVAL;
	}
	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q)
		return -ENOMEM;
	kref_init(&q->ref);
	q->index = ida_alloc_max(&fmq_ida, MAX_DEVICES - 1, GFP_KERNEL);
	if (q->index < 0) {
		kfree(q);
		return q->index;
	}
	q->vdev = vdev;
	vdev->priv = q;
	spin_lock_init(&q->lock);
	mutex_init(&q->open_lock);
	init_waitqueue_head(&q->wq);
	INIT_LIST_HEAD(&q->free_ctx);
	INIT_LIST_HEAD(&q->reap);
	err = read_config(q);
	if (err)
		goto fail;
	BUILD_BUG_ON(ARRAY_SIZE(names) != MSGQ_QUEUE_RETURN + 1 || ARRAY_SIZE(callbacks) != ARRAY_SIZE(names));
	err = virtio_find_vqs(vdev, ARRAY_SIZE(names), vqs, callbacks, names, NULL);
	if (err)
		goto fail;
	q->sendq = vqs[MSGQ_QUEUE_SEND];
	q->recvq = vqs[MSGQ_QUEUE_RECV];
	q->retq = vqs[MSGQ_QUEUE_RETURN];

	/* Three descriptors a send. */
	q->nr_ctx = min(virtqueue_get_vring_size(q->sendq) / 3, MAX_IN_FLIGHT);
	q->nr_rx = min(virtqueue_get_vring_size(q->recvq), q->cfg.recv_slots);
	q->ctx = kcalloc(q->nr_ctx, sizeof(*q->ctx), GFP_KERNEL);
	q->rx = kcalloc(q->nr_rx, sizeof(*q->rx), GFP_KERNEL);
	q->fifo = kcalloc(q->cfg.recv_slots, sizeof(*q->fifo), GFP_KERNEL);
	q->covered = kvzalloc(q->cfg.recv_slots, GFP_KERNEL);
	q->held = kvcalloc(q->cfg.recv_slots, sizeof(*q->held), GFP_KERNEL);
	q->ret = kcalloc(NR_RET_BUFS, sizeof(*q->ret), GFP_KERNEL);
	if (!q->nr_ctx || !q->ctx || !q->rx || !q->fifo || !q->covered || !q->held || !q->ret) {
		err = -ENOMEM;
		goto fail_vqs;
	}
	for (i = 0; i < q->nr_ctx; i++)
		list_add_tail(&q->ctx[i].link, &q->free_ctx);
	/* Interrupts only while someone waits (see arm()). */
	virtqueue_disable_cb(q->sendq);
	virtqueue_disable_cb(q->recvq);
	virtqueue_disable_cb(q->retq);
	virtio_device_ready(vdev);
	for (i = 0; i < q->nr_rx; i++)
		post_rx(q, &q->rx[i]);

	snprintf(q->name, sizeof(q->name), "ferry-msgq%d", q->index);
	q->misc = (struct miscdevice){
		.minor = MISC_DYNAMIC_MINOR, .name = q->name, .fops = &fmq_fops, .mode = 0600,
	};
	err = misc_register(&q->misc);
	if (err)
		goto fail_reset;
	q->misc_registered = true;
	dev_info(&vdev->dev, "/dev/%s: vm %u, %u+%u slots of %u KiB at %pa, %u peers, copy below %u bytes\n",
		 q->name, q->cfg.vm_id, q->cfg.send_slots, q->cfg.recv_slots, q->cfg.page_size / 1024, &q->window,
		 q->cfg.nr_peers, q->cfg.copy_threshold);
	return 0;

fail_reset:
	virtio_reset_device(vdev);
fail_vqs:
	vdev->config->del_vqs(vdev);
fail:
	vdev->priv = NULL;
	kref_put(&q->ref, fmq_free);
	return err;
}

static void fmq_remove(struct virtio_device *vdev)
{
	struct fmq *q = vdev->priv;
	unsigned long flags;

	misc_deregister(&q->misc);
	spin_lock_irqsave(&q->lock, flags);
	q->dead = true;
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_interruptible_all(&q->wq);
	mutex_lock(&q->open_lock);
	if (q->owner)
		unmap_mapping_range(q->owner->f_mapping, 0, 0, 1);
	mutex_unlock(&q->open_lock);
	virtio_reset_device(vdev);
	vdev->config->del_vqs(vdev);
	kref_put(&q->ref, fmq_free);
}

/* The device asks for a reset when a ring broke its rules. */
static void fmq_config_changed(struct virtio_device *vdev)
{
	struct fmq *q = vdev->priv;
	unsigned long flags;

	if (!q)
		return;
	spin_lock_irqsave(&q->lock, flags);
	if (vdev->config->get_status(vdev) & VIRTIO_CONFIG_S_NEEDS_RESET) {
		dev_err(&vdev->dev, "the device needs a reset; the queue stops\n");
		q->dead = true;
	}
	check_broken(q);
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_interruptible_all(&q->wq);
}

static const struct virtio_device_id id_table[] = {
	{ VIRTIO_ID_MSGQ, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static struct virtio_driver fmq_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = id_table,
	.probe = fmq_probe,
	.remove = fmq_remove,
	.config_changed = fmq_config_changed,
};

module_virtio_driver(fmq_driver);
MODULE_DEVICE_TABLE(virtio, id_table);
MODULE_DESCRIPTION("ferry message queues: VM-to-VM messages that move pages");
MODULE_LICENSE("GPL");
