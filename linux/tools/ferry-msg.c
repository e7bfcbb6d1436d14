/* ferry-msg: ferry's message queues from a Linux shell, through the
 * ferry_msgq module and libferrymsg (linux/lib/ferrymsg.h).
 *
 *   ferry-msg info
 *   ferry-msg send [--copy|--remap] [--deferred] PEER [FILE]   (stdin without FILE)
 *   ferry-msg recv [--count N] [--timeout MS] [--data]
 *   ferry-msg bench role=send|recv ...      streams and verifies (as ferry-guest's msgbulk)
 *   ferry-msg ping role=ping|pong ...       round trips (as ferry-guest's msgping)
 *   ferry-msg security role=attack|victim ...  every misuse refused (as msgsecurity)
 *
 * bench, ping and security take ferry-guest's key=value arguments and speak
 * the same protocol as its apps, so either side can be ferry-guest or Linux;
 * they print the same "result {...}" lines. Exit status 0 only if
 * everything checked was right. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ferrymsg.h"

#define MAX_RUNS 16
#define BATCH_MAX 256

static char **kv_argv;
static int kv_argc;

/* key=value arguments, as ferry-guest's apps take them. */
static const char *arg_str(const char *key, const char *dflt)
{
	size_t k = strlen(key);
	for (int i = 0; i < kv_argc; i++)
		if (!strncmp(kv_argv[i], key, k) && kv_argv[i][k] == '=')
			return kv_argv[i] + k + 1;
	return dflt;
}

/* Sizes and counts: decimal with an optional K, M or G. */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	if (*end)
		return false;
	*out = v;
	return true;
}

static uint64_t arg_u64(const char *key, uint64_t dflt)
{
	const char *v = arg_str(key, NULL);
	uint64_t x;
	if (!v)
		return dflt;
	if (!parse_size(v, &x)) {
		fprintf(stderr, "ferry-msg: %s=%s is not a number\n", key, v);
		exit(2);
	}
	return x;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

static int open_queue(struct fm *q)
{
	int err = fm_open(q, arg_str("dev", NULL));
	if (err) {
		fprintf(stderr, "ferry-msg: %s: %s\n", arg_str("dev", "/dev/ferry-msgq0"), strerror(-err));
		return -1;
	}
	return 0;
}

static uint32_t mode_arg(const char *dflt)
{
	const char *m = arg_str("mode", dflt);
	return !strcmp(m, "copy") ? MSGQ_SEND_COPY : !strcmp(m, "remap") ? MSGQ_SEND_REMAP : MSGQ_SEND_ADAPTIVE;
}

static const char *mode_name(uint32_t mode)
{
	return mode == MSGQ_SEND_COPY ? "copy" : mode == MSGQ_SEND_REMAP ? "remap" : "adaptive";
}

/* ferry-guest's test data (guest/lib/pattern.c), bit for bit: a receiver on
 * either kernel verifies what a sender on either wrote. */
static void pattern_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	uint8_t *p = buf;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	for (; i < len; i++)
		p[i] = (uint8_t)(x >> (8 * (i % 8)));
}

static uint64_t checksum64(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t a = 1, b = 0, w;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		a += w;
		b += a;
	}
	for (; i < len; i++) {
		a += p[i];
		b += a;
	}
	return a ^ (b << 1) ^ len;
}

/* Sends one message in slot, retrying while the receiver is full (it has
 * not returned slots yet) for up to timeout_ms. */
static int send_retry(struct fm *q, uint32_t dest, uint32_t slot, uint32_t len, uint32_t mode, int timeout_ms)
{
	uint64_t until = now_ns() + (uint64_t)timeout_ms * 1000000;
	int st;
	while ((st = fm_send1(q, dest, slot, len, mode, true)) == MSGQ_E_FULL && now_ns() < until)
		sleep_us(1000);
	return st;
}

/* Sends one-byte messages until the peer's driver takes them: it may still
 * be booting. The receivers ignore messages of length 1. */
static int wait_peer(struct fm *q, uint32_t dest, uint32_t mode, int timeout_s)
{
	uint32_t slot;
	if (fm_alloc(q, 1, &slot))
		return MSGQ_E_FULL;
	fm_slot(q, slot)[0] = 0;
	uint64_t until = now_ns() + (uint64_t)timeout_s * 1000000000ull;
	int st;
	while (((st = fm_send1(q, dest, slot, 1, mode, true)) == MSGQ_E_DEST_DOWN || st == MSGQ_E_FULL) &&
	       now_ns() < until)
		sleep_us(20000);
	fm_free(q, slot, 1);
	return st;
}

/* ---- info, send, recv ------------------------------------------------------ */

static int cmd_info(void)
{
	struct fm q;
	if (open_queue(&q))
		return 1;
	struct ferry_msgq_info *i = &q.info;
	printf("vm_id %u, page size %u, %u send slots, %u receive slots, messages up to %u pages, copy below %u "
	       "bytes, deferred sends within %u us, %u in flight\n",
	       i->vm_id, i->page_size, i->send_slots, i->recv_slots, i->max_msg_pages, i->copy_threshold, i->poll_us,
	       i->max_in_flight);
	for (unsigned p = 0; p < i->nr_peers; p++)
		printf("peer %u %s\n", i->peers[p].vm_id, i->peers[p].name);
	fm_close(&q);
	return 0;
}

static int cmd_send(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "copy", no_argument, 0, 'c' }, { "remap", no_argument, 0, 'r' },
		{ "deferred", no_argument, 0, 'd' }, { 0, 0, 0, 0 },
	};
	uint32_t mode = MSGQ_SEND_ADAPTIVE;
	bool immediate = true;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'c')
			mode = MSGQ_SEND_COPY;
		else if (c == 'r')
			mode = MSGQ_SEND_REMAP;
		else if (c == 'd')
			immediate = false;
		else
			return 2;
	}
	if (optind >= argc || argc - optind > 2) {
		fprintf(stderr, "usage: ferry-msg send [--copy|--remap] [--deferred] PEER [FILE]\n");
		return 2;
	}
	struct fm q;
	if (open_queue(&q))
		return 1;
	uint32_t dest = fm_peer(&q, argv[optind]);
	if (!dest) {
		fprintf(stderr, "ferry-msg: %s is not a peer of this VM\n", argv[optind]);
		return 1;
	}
	int fd = optind + 1 < argc ? open(argv[optind + 1], O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		fprintf(stderr, "ferry-msg: %s: %s\n", argv[optind + 1], strerror(errno));
		return 1;
	}
	/* Read straight into the send slots: the message is built in place. */
	uint64_t cap = (uint64_t)q.info.max_msg_pages * q.info.page_size, len = 0;
	uint32_t slot;
	if (fm_alloc(&q, (uint32_t)cap, &slot)) {
		fprintf(stderr, "ferry-msg: no free send slots\n");
		return 1;
	}
	ssize_t n;
	while (len < cap && (n = read(fd, fm_slot(&q, slot) + len, cap - len)) > 0)
		len += (uint64_t)n;
	if (!len) {
		fprintf(stderr, "ferry-msg: nothing to send\n");
		return 1;
	}
	struct ferry_msgq_send s = { .dest = dest, .slot = slot, .len = (uint32_t)len, .mode = mode };
	int r = fm_send(&q, &s, 1, FERRY_MSGQ_WAIT | (immediate ? FERRY_MSGQ_IMMEDIATE : 0), 10000);
	if (r < 0) {
		fprintf(stderr, "ferry-msg: send: %s\n", strerror(-r));
		return 1;
	}
	printf("ferry-msg: %" PRIu64 " bytes to %s (vm %u): %s, %s\n", len, argv[optind], dest, fm_status_name(s.status),
	       s.how == MSGQ_HOW_REMAPPED ? "remapped" : s.how == MSGQ_HOW_COPIED ? "copied" : "not sent");
	fm_close(&q);
	return s.status == MSGQ_OK ? 0 : 1;
}

static int cmd_recv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "count", required_argument, 0, 'n' }, { "timeout", required_argument, 0, 't' },
		{ "data", no_argument, 0, 'd' }, { 0, 0, 0, 0 },
	};
	long count = 1, timeout = -1;
	bool data = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'n')
			count = strtol(optarg, NULL, 10);
		else if (c == 't')
			timeout = strtol(optarg, NULL, 10);
		else if (c == 'd')
			data = true;
		else
			return 2;
	}
	struct fm q;
	if (open_queue(&q))
		return 1;
	for (long i = 0; i < count; i++) {
		struct ferry_msgq_msg m;
		int n = fm_recv(&q, &m, 1, (int)timeout, NULL, 0, 0);
		if (n <= 0) {
			fprintf(stderr, "ferry-msg: %s\n", n ? strerror(-n) : "nothing received");
			return 1;
		}
		const char *name = fm_peer_name(&q, m.src);
		fprintf(data ? stderr : stdout, "ferry-msg: from vm %u (%s): %u bytes, %s, cookie %u\n", m.src,
			name ? name : "not a peer", m.len, m.flags & MSGQ_RECV_REMAPPED ? "remapped" : "copied", m.cookie);
		if (data && fwrite(fm_msg_data(&q, &m), 1, m.len, stdout) != m.len)
			return 1;
		struct ferry_msgq_return r = { m.slot, m.nr_pages };
		fm_recv(&q, NULL, 0, 0, &r, 1, 0);
	}
	fm_close(&q);
	return 0;
}

/* ---- bench: ferry-guest's msgbulk protocol ---------------------------------- */

#define BULK_DATA 0x4b4c5542u  /* "BULK" */
#define BULK_END  0x21444e45u  /* "END!" */
#define BULK_DONE 0x454e4f44u  /* "DONE" */

struct bulk_hdr {
	uint32_t magic, run, seq, count;
	uint32_t len, full;
	uint64_t csum;
};

static void build(uint8_t *buf, uint32_t len, uint32_t run, uint32_t seq, uint32_t count, bool full)
{
	struct bulk_hdr h = { BULK_DATA, run, seq, count, len, full, 0 };
	if (full && len > sizeof(h)) {
		pattern_fill(buf + sizeof(h), len - sizeof(h), (uint64_t)run << 32 | seq);
		h.csum = checksum64(buf + sizeof(h), len - sizeof(h));
	}
	memcpy(buf, &h, sizeof(h) < len ? sizeof(h) : len);
}

static bool send_control(struct fm *q, uint32_t dest, uint32_t mode, uint32_t magic, uint32_t run, uint32_t count)
{
	struct bulk_hdr h = { magic, run, 0, count, sizeof(h), 0, 0 };
	uint32_t slot;
	if (fm_alloc(q, sizeof(h), &slot))
		return false;
	memcpy(fm_slot(q, slot), &h, sizeof(h));
	int st = send_retry(q, dest, slot, sizeof(h), mode, 10000);
	fm_free(q, slot, sizeof(h));
	return st == MSGQ_OK;
}

struct run_result {
	uint64_t ns, remapped, copied, retries;
};

/* One run: every buffer the send region holds in flight, posted in
 * batches (one system call, and with post=immediate one doorbell, per
 * batch); refused-because-full sends go again after a pause. */
static int send_run(struct fm *q, uint32_t dest, uint32_t len, uint32_t r, uint32_t count, uint32_t mode,
		    bool immediate, unsigned batch, bool full, struct run_result *res)
{
	uint32_t pages = fm_slots_for(q, len);
	if (pages > q->info.max_msg_pages) {
		fprintf(stderr, "ferry-msg: %u bytes is more than max_msg_pages (%u)\n", len, q->info.max_msg_pages);
		return 2;
	}
	unsigned nbufs = q->info.send_slots / pages;
	if (nbufs > q->info.max_in_flight)
		nbufs = q->info.max_in_flight;
	if (nbufs > 1024)
		nbufs = 1024;
	if (batch > nbufs)
		batch = nbufs;
	uint32_t *slot = calloc(nbufs, sizeof(*slot));
	bool *busy = calloc(nbufs, 1), *retry = calloc(nbufs, 1);
	struct ferry_msgq_send s[BATCH_MAX];
	struct ferry_msgq_done d[BATCH_MAX];
	if (!slot || !busy || !retry)
		return 1;
	for (unsigned k = 0; k < nbufs; k++)
		if (fm_alloc(q, len, &slot[k]))
			return 1;
	uint64_t t0 = now_ns();
	uint32_t seq = 0, done = 0;
	unsigned next = 0, nretry = 0;
	int err = 0;
	while (done < count && !err) {
		unsigned n = 0;
		if (nretry) {
			sleep_us(100);
			for (unsigned k = 0; k < nbufs && n < batch; k++)
				if (retry[k]) {
					s[n++] = (struct ferry_msgq_send){ dest, slot[k], len, mode, k, 0, 0, 0 };
					retry[k] = false;
					nretry--;
				}
		}
		while (n < batch && seq < count && !busy[next]) {
			build(fm_slot(q, slot[next]), len, r, seq, count, full);
			busy[next] = true;
			s[n++] = (struct ferry_msgq_send){ dest, slot[next], len, mode, next, 0, 0, 0 };
			next = (next + 1) % nbufs;
			seq++;
		}
		if (n) {
			int posted = fm_send(q, s, n, immediate ? FERRY_MSGQ_IMMEDIATE : 0, 0);
			if (posted < 0 || (unsigned)posted != n) {
				/* max_in_flight bounds nbufs: the driver always has room. */
				fprintf(stderr, "ferry-msg: posted %d of %u sends\n", posted, n);
				err = 1;
				break;
			}
		}
		/* Wait only when there is nothing to post. */
		bool idle = !nretry && (seq == count || busy[next]);
		int got = fm_reap(q, d, BATCH_MAX, idle ? 2000 : 0);
		if (got < 0) {
			fprintf(stderr, "ferry-msg: reap: %s\n", strerror(-got));
			err = 1;
		}
		for (int i = 0; i < got; i++) {
			unsigned k = d[i].cookie;
			if (k >= nbufs) {
				err = 1;
			} else if (d[i].status == MSGQ_OK) {
				busy[k] = false;
				done++;
				if (d[i].how == MSGQ_HOW_REMAPPED)
					res->remapped++;
				else
					res->copied++;
			} else if (d[i].status == MSGQ_E_FULL) {
				res->retries++;
				retry[k] = true;
				nretry++;
			} else {
				fprintf(stderr, "ferry-msg: send of %u bytes failed: %s\n", len, fm_status_name(d[i].status));
				err = 1;
			}
		}
	}
	res->ns = now_ns() - t0;
	for (unsigned k = 0; k < nbufs; k++)
		fm_free(q, slot[k], len);
	free(slot);
	free(busy);
	free(retry);
	return err;
}

static int parse_sizes(uint32_t *sizes)
{
	char buf[256];
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", arg_str("sizes", "64,4K,64K,2M"));
	for (char *tok = strtok(buf, ","); tok && n < MAX_RUNS; tok = strtok(NULL, ",")) {
		uint64_t v;
		if (!parse_size(tok, &v) || v < sizeof(struct bulk_hdr) || v > UINT32_MAX) {
			fprintf(stderr, "ferry-msg: bad size \"%s\" (at least %zu bytes)\n", tok, sizeof(struct bulk_hdr));
			return -1;
		}
		sizes[n++] = (uint32_t)v;
	}
	return n;
}

static int bench_send(struct fm *q)
{
	uint32_t sizes[MAX_RUNS];
	int runs = parse_sizes(sizes);
	uint32_t count = (uint32_t)arg_u64("count", 100), mode = mode_arg("adaptive");
	bool immediate = strcmp(arg_str("post", "immediate"), "deferred") != 0;
	bool full = strcmp(arg_str("check", "full"), "header") != 0;
	unsigned batch = (unsigned)arg_u64("batch", 64);
	const char *peer = arg_str("peer", "");
	uint32_t dest = fm_peer(q, peer);
	if (runs <= 0 || !count || !batch || batch > BATCH_MAX || !dest) {
		fprintf(stderr, "ferry-msg: bench role=send needs peer=NAME (a peer), sizes, count >= 1, batch 1-%d\n",
			BATCH_MAX);
		return 2;
	}
	uint32_t control = mode == MSGQ_SEND_COPY ? MSGQ_SEND_COPY : MSGQ_SEND_REMAP;
	int st = wait_peer(q, dest, control, (int)arg_u64("wait_s", 300));
	if (st != MSGQ_OK) {
		fprintf(stderr, "ferry-msg: peer %s is not receiving (%s)\n", peer, fm_status_name(st));
		return 1;
	}
	int failures = 0;
	for (int r = 0; r < runs; r++) {
		struct run_result res = { 0, 0, 0, 0 };
		if (send_run(q, dest, sizes[r], (uint32_t)r, count, mode, immediate, batch, full, &res))
			return 1;
		if (!send_control(q, dest, control, BULK_END, (uint32_t)r, count)) {
			fprintf(stderr, "ferry-msg: could not end run %d\n", r);
			failures++;
		}
		double secs = (double)res.ns / 1e9, bytes = (double)sizes[r] * count;
		printf("ferry-msg: result {\"size\": %u, \"count\": %u, \"transport\": \"msgq\", \"kernel\": \"linux\", "
		       "\"mode\": \"%s\", \"post\": \"%s\", \"batch\": %u, \"check\": \"%s\", \"ns\": %" PRIu64 ", "
		       "\"mbps\": %.1f, \"msgs_per_s\": %.0f, \"remapped\": %" PRIu64 ", \"copied\": %" PRIu64 ", "
		       "\"full_retries\": %" PRIu64 "}\n",
		       sizes[r], count, mode_name(mode), immediate ? "immediate" : "deferred", batch,
		       full ? "full" : "header", res.ns, bytes / secs / 1e6, count / secs, res.remapped, res.copied,
		       res.retries);
		fflush(stdout);
	}
	if (!send_control(q, dest, control, BULK_DONE, (uint32_t)runs, 0))
		failures++;
	return failures ? 1 : 0;
}

struct run_state {
	uint32_t count, received, bad, dupes, remapped;
	uint8_t *seen;
	bool ended;
};

/* Receives `sessions` sender invocations in turn (each ends with its DONE),
 * in one process: messages of the next sender that come in the same batch
 * as a DONE belong to the next session (a receiver per sender would take
 * them and lose them on exit). */
static int bench_recv(struct fm *q)
{
	static struct run_state runs[MAX_RUNS];
	unsigned sessions = (unsigned)arg_u64("sessions", 1);
	int timeout = (int)arg_u64("timeout_ms", 300000), errors = 0;
	static struct ferry_msgq_msg m[BATCH_MAX];
	static struct ferry_msgq_return ret[BATCH_MAX];
	unsigned nret = 0;
	int n = 0, i = 0;
	if (!sessions || sessions > 64) {
		fprintf(stderr, "ferry-msg: bench role=recv sessions=1-64\n");
		return 2;
	}
	for (unsigned sess = 0; sess < sessions; sess++) {
		int nruns = -1;
		memset(runs, 0, sizeof(runs));
		while (nruns < 0) {
			if (i == n) {
				/* Give back the last batch and take the next in one call. */
				n = fm_recv(q, m, BATCH_MAX, timeout, ret, nret, 0);
				nret = 0;
				i = 0;
				if (n <= 0) {
					fprintf(stderr, "ferry-msg: %s\n", n ? strerror(-n) : "nothing received");
					return 1;
				}
			}
			for (; i < n && nruns < 0; i++) {
				const uint8_t *data = fm_msg_data(q, &m[i]);
				ret[nret++] = (struct ferry_msgq_return){ m[i].slot, m[i].nr_pages };
				if (m[i].len == 1) /* a sender's readiness probe */
					continue;
				struct bulk_hdr h;
				memset(&h, 0, sizeof(h));
				memcpy(&h, data, m[i].len < sizeof(h) ? m[i].len : sizeof(h));
				struct run_state *rs = h.run < MAX_RUNS ? &runs[h.run] : NULL;
				if (h.magic == BULK_DONE) {
					nruns = (int)h.run;
				} else if (!rs || (h.magic != BULK_DATA && h.magic != BULK_END)) {
					fprintf(stderr, "ferry-msg: message from %u with a bad header\n", m[i].src);
					errors++;
				} else if (h.magic == BULK_END) {
					rs->ended = true;
					rs->count = h.count;
				} else {
					if (!rs->seen) {
						rs->count = h.count;
						rs->seen = calloc(h.count / 8 + 1, 1);
						if (!rs->seen)
							return 1;
					}
					bool ok = h.len == m[i].len && h.seq < rs->count;
					if (ok && h.full && m[i].len > sizeof(h))
						ok = checksum64(data + sizeof(h), m[i].len - sizeof(h)) == h.csum;
					if (!ok) {
						if (rs->bad++ < 4)
							fprintf(stderr, "ferry-msg: run %u message %u (%u bytes) is corrupt\n",
								h.run, h.seq, m[i].len);
					} else if (rs->seen[h.seq / 8] & (1u << (h.seq % 8))) {
						rs->dupes++;
					} else {
						rs->seen[h.seq / 8] |= (uint8_t)(1u << (h.seq % 8));
						rs->received++;
						rs->remapped += !!(m[i].flags & MSGQ_RECV_REMAPPED);
					}
				}
			}
		}
		for (int r = 0; r < nruns && r < MAX_RUNS; r++) {
			struct run_state *rs = &runs[r];
			bool ok = rs->ended && rs->received == rs->count && !rs->bad && !rs->dupes;
			printf("ferry-msg: received run %d: %u of %u messages verified (%u remapped), %u corrupt, "
			       "%u duplicated: %s\n",
			       r, rs->received, rs->count, rs->remapped, rs->bad, rs->dupes, ok ? "ok" : "FAILED");
			errors += !ok;
			free(rs->seen);
		}
		if (sessions > 1)
			printf("ferry-msg: session %u of %u done\n", sess + 1, sessions);
		fflush(stdout);
	}
	fm_recv(q, NULL, 0, 0, ret, nret, FERRY_MSGQ_IMMEDIATE);
	return errors ? 1 : 0;
}

/* ---- ping: ferry-guest's msgping protocol ----------------------------------- */

#define PING_END 0x21444e45u

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int ping_ping(struct fm *q)
{
	const char *peer = arg_str("peer", "");
	uint32_t dest = fm_peer(q, peer), mode = mode_arg("adaptive");
	bool immediate = strcmp(arg_str("post", "immediate"), "deferred") != 0;
	unsigned count = (unsigned)arg_u64("count", 1000);
	bool trace = arg_u64("trace", 0);
	uint32_t size = (uint32_t)arg_u64("size", 64), slot;
	if (!dest || !count || size < 8 || fm_alloc(q, size, &slot)) {
		fprintf(stderr, "ferry-msg: ping needs peer=NAME (a peer), count >= 1, size >= 8 (and slots for it)\n");
		return 2;
	}
	if (wait_peer(q, dest, MSGQ_SEND_COPY, (int)arg_u64("wait_s", 300)) != MSGQ_OK) {
		fprintf(stderr, "ferry-msg: %s is not receiving\n", peer);
		return 1;
	}
	uint64_t *rtt = calloc(count, sizeof(*rtt));
	if (!rtt)
		return 1;
	/* Each reply goes back with the next receive call: one system call
	 * fewer per round trip. */
	struct ferry_msgq_return ret;
	unsigned nret = 0;
	for (unsigned i = 0; i <= count; i++) {
		uint8_t *buf = fm_slot(q, slot);
		memset(buf, (int)(i & 0xff), size);
		uint32_t tag = i == count ? PING_END : i;
		memcpy(buf, &tag, 4);
		uint64_t t0 = now_ns();
		int st = fm_send1(q, dest, slot, size, mode, immediate);
		if (st != MSGQ_OK) {
			fprintf(stderr, "ferry-msg: ping %u: %s\n", i, st < 0 ? strerror(-st) : fm_status_name(st));
			return 1;
		}
		if (i == count)
			break;
		uint64_t t_sent = now_ns();
		struct ferry_msgq_msg m;
		/* As long as wait_s: how long a reply takes on a loaded host is
		 * a measurement, not a failure. */
		int got = fm_recv(q, &m, 1, (int)arg_u64("wait_s", 300) * 1000, &ret, nret, 0);
		if (trace && i < 30)
			printf("ferry-msg: trace %u: send %" PRIu64 " us, reply after %" PRIu64 " us\n", i,
			       (t_sent - t0) / 1000, (now_ns() - t_sent) / 1000);
		if (got != 1) {
			fprintf(stderr, "ferry-msg: no reply to message %u\n", i);
			return 1;
		}
		uint64_t t1 = now_ns();
		uint32_t back;
		memcpy(&back, fm_msg_data(q, &m), 4);
		if (back != i || m.len != size || m.src != dest) {
			fprintf(stderr, "ferry-msg: reply %u (from %u, %u bytes) does not match message %u\n", back, m.src,
				m.len, i);
			return 1;
		}
		ret = (struct ferry_msgq_return){ m.slot, m.nr_pages };
		nret = 1;
		rtt[i] = t1 - t0;
	}
	if (nret)
		fm_recv(q, NULL, 0, 0, &ret, nret, FERRY_MSGQ_IMMEDIATE);
	qsort(rtt, count, sizeof(*rtt), cmp_u64);
	printf("ferry-msg: result {\"size\": %u, \"count\": %u, \"transport\": \"msgq\", \"kernel\": \"linux\", "
	       "\"mode\": \"%s\", \"post\": \"%s\", \"rtt_ns_min\": %" PRIu64 ", \"rtt_ns_median\": %" PRIu64 ", "
	       "\"rtt_ns_p99\": %" PRIu64 ", \"one_way_ns_median\": %" PRIu64 "}\n",
	       size, count, mode_name(mode), immediate ? "immediate" : "deferred", rtt[0], rtt[count / 2],
	       rtt[count * 99 / 100], rtt[count / 2] / 2);
	free(rtt);
	return 0;
}

static int ping_pong(struct fm *q)
{
	uint32_t mode = mode_arg("adaptive");
	bool immediate = strcmp(arg_str("post", "immediate"), "deferred") != 0;
	uint32_t slot = 0, slot_len = 0;
	int timeout = (int)arg_u64("timeout_ms", 300000);
	bool trace = arg_u64("trace", 0);
	unsigned traced = 0;
	/* The previous message goes back with the next receive call. */
	struct ferry_msgq_return ret;
	unsigned nret = 0;
	for (;;) {
		struct ferry_msgq_msg m;
		uint64_t t_wait = now_ns();
		if (fm_recv(q, &m, 1, timeout, &ret, nret, 0) != 1) {
			fprintf(stderr, "ferry-msg: pong heard nothing for %d ms\n", timeout);
			return 1;
		}
		const uint8_t *data = fm_msg_data(q, &m);
		uint32_t tag = 0;
		if (m.len >= 4)
			memcpy(&tag, data, 4);
		ret = (struct ferry_msgq_return){ m.slot, m.nr_pages };
		nret = 1;
		if (m.len == 1 || tag == PING_END) {
			if (tag != PING_END)
				continue;
			fm_recv(q, NULL, 0, 0, &ret, nret, FERRY_MSGQ_IMMEDIATE);
			return 0;
		}
		if (m.len > slot_len) {
			if (slot_len)
				fm_free(q, slot, slot_len);
			if (fm_alloc(q, m.len, &slot))
				return 1;
			slot_len = m.len;
		}
		memcpy(fm_slot(q, slot), data, m.len);
		uint64_t t0 = now_ns();
		int st = fm_send1(q, m.src, slot, m.len, mode, immediate);
		if (trace && traced++ < 30)
			printf("ferry-msg: trace: waited %" PRIu64 " us, send %" PRIu64 " us\n", (t0 - t_wait) / 1000,
			       (now_ns() - t0) / 1000);
		if (st != MSGQ_OK) {
			fprintf(stderr, "ferry-msg: reply to %u: %s\n", m.src, st < 0 ? strerror(-st) : fm_status_name(st));
			return 1;
		}
	}
}

/* ---- security: ferry-guest's msgsecurity protocol ----------------------------- */

#define SEC_FILL    0x4c4c4946u
#define SEC_RELEASE 0x454c4552u
#define SEC_CHECK   0x4b434843u
#define SEC_PROBE   0x424f5250u
#define SEC_VERDICT 0x54434456u
#define SEC_DONE    0x454e4f44u
#define PATTERN_1   0xa5
#define PATTERN_2   0x5a

static int failures;

static void expect(const char *what, int got, int want, const char *(*name)(int))
{
	bool ok = got == want;
	printf("ferry-msg: %s: %s, want %s: %s\n", what, name(got), name(want), ok ? "ok" : "FAILED");
	failures += !ok;
}

static const char *errno_name(int e)
{
	return e == 0 ? "success" : strerrorname_np(e) ? strerrorname_np(e) : "?";
}

static int send_word(struct fm *q, uint32_t dest, uint32_t word)
{
	uint32_t slot;
	if (fm_alloc(q, 4, &slot))
		return MSGQ_E_FULL;
	memcpy(fm_slot(q, slot), &word, 4);
	int st = fm_send1(q, dest, slot, 4, MSGQ_SEND_COPY, true);
	fm_free(q, slot, 4);
	return st;
}

/* After the full-receiver check the victim still holds what it took until
 * it lets go (our release order got in, or it held every slot and we were
 * quiet): until then the attacker's sends are refused as full, which moves
 * nothing. So each is tried again, for as long as wait_s: a loaded host is
 * no failure. */
static uint64_t retry_until(void)
{
	return now_ns() + arg_u64("wait_s", 300) * 1000000000ull;
}

static int send_word_while_full(struct fm *q, uint32_t dest, uint32_t word)
{
	uint64_t until = retry_until();
	int st;
	while ((st = send_word(q, dest, word)) == MSGQ_E_FULL && now_ns() < until)
		sleep_us(5000);
	return st;
}

static uint32_t first_word(struct fm *q, const struct ferry_msgq_msg *m)
{
	uint32_t w = 0;
	if (m->len >= 4)
		memcpy(&w, fm_msg_data(q, m), 4);
	return w;
}

static int attack(struct fm *q)
{
	const struct ferry_msgq_info *cfg = &q->info;
	uint32_t victim = fm_peer(q, arg_str("peer", "")), gone = fm_peer(q, arg_str("gone", ""));
	uint32_t denied = (uint32_t)arg_u64("denied_id", 0), ps = cfg->page_size, slot;
	if (!victim || !gone || !denied || fm_alloc(q, ps, &slot)) {
		fprintf(stderr, "ferry-msg: security role=attack needs peer=VICTIM gone=NAME (both peers), denied_id=N\n");
		return 2;
	}
	if (wait_peer(q, victim, MSGQ_SEND_COPY, (int)arg_u64("wait_s", 300)) != MSGQ_OK) {
		fprintf(stderr, "ferry-msg: victim is not receiving\n");
		return 1;
	}
	uint8_t *buf = fm_slot(q, slot);
	memset(buf, 1, 64);
	expect("send to a VM that is not a peer", fm_send1(q, denied, slot, 64, 0, true), MSGQ_E_DENIED, fm_status_name);
	expect("send to an id no VM has", fm_send1(q, 200, slot, 64, 0, true), MSGQ_E_NO_DEST, fm_status_name);
	expect("send to id 0", fm_send1(q, 0, slot, 64, 0, true), MSGQ_E_NO_DEST, fm_status_name);
	int st = MSGQ_OK;
	for (int i = 0; i < 500 && (st = fm_send1(q, gone, slot, 64, 0, true)) != MSGQ_E_DEST_DOWN; i++)
		sleep_us(10000);
	expect("send to a peer that has stopped", st, MSGQ_E_DEST_DOWN, fm_status_name);
	/* Buffers outside the send region cannot be named through the
	 * driver, which takes slot numbers: it refuses one past the end. */
	struct ferry_msgq_send bad = { .dest = victim, .slot = cfg->send_slots, .len = 64 };
	int r = fm_send(q, &bad, 1, FERRY_MSGQ_WAIT | FERRY_MSGQ_IMMEDIATE, 1000);
	expect("send from a slot past the send region (driver)", r < 0 ? -r : 0, EINVAL, errno_name);
	if (cfg->max_msg_pages < cfg->send_slots)
		expect("send longer than max_msg_pages", fm_send1(q, victim, 0, (cfg->max_msg_pages + 1) * ps, 0, true),
		       MSGQ_E_TOO_LONG, fm_status_name);
	expect("send of length 0", fm_send1(q, victim, slot, 0, 0, true), MSGQ_E_TOO_LONG, fm_status_name);
	expect("send past the end of the send region", fm_send1(q, victim, cfg->send_slots - 1, 2 * ps, 0, true),
	       MSGQ_E_TOO_LONG, fm_status_name);
	/* The mapping rules: received pages cannot be made writable. */
	void *w = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd, (off_t)cfg->recv_offset);
	expect("mapping the receive region writable", w == MAP_FAILED ? errno : 0, EPERM, errno_name);
	if (w != MAP_FAILED)
		munmap(w, ps);
	expect("making the received pages writable (mprotect)",
	       mprotect((void *)q->recv, ps, PROT_READ | PROT_WRITE) < 0 ? errno : 0, EACCES, errno_name);
	struct fm second;
	int e = fm_open(&second, arg_str("dev", NULL));
	expect("a second open of the device", -e, EBUSY, errno_name);
	if (!e)
		fm_close(&second);

	/* A full receiver: the victim holds everything until told otherwise. */
	if (send_word(q, victim, SEC_FILL) != MSGQ_OK)
		failures++;
	st = MSGQ_OK;
	for (uint32_t i = 0; i <= cfg->recv_slots + 8192 && st == MSGQ_OK; i++)
		st = fm_send1(q, victim, slot, 64, MSGQ_SEND_COPY, true);
	expect("send into a full receiver", st, MSGQ_E_FULL, fm_status_name);
	st = send_word_while_full(q, victim, SEC_RELEASE);
	expect("the receiver takes messages again", st, MSGQ_OK, fm_status_name);

	/* After-send write: the message is the receiver's alone now. */
	memset(buf, PATTERN_1, ps);
	uint32_t probe = SEC_PROBE;
	memcpy(buf, &probe, 4);
	/* The release order may have taken the one slot the victim had
	 * free (one it had given back but the device had not taken back yet
	 * when our sends were refused), and it lets go only once it has read
	 * that order: the probe waits for that, as the order did. */
	struct ferry_msgq_send ps_send;
	uint64_t until = retry_until();
	for (;;) {
		ps_send = (struct ferry_msgq_send){ .dest = victim, .slot = slot, .len = ps, .mode = MSGQ_SEND_REMAP };
		r = fm_send(q, &ps_send, 1, FERRY_MSGQ_WAIT | FERRY_MSGQ_IMMEDIATE, 10000);
		if (r != 1 || ps_send.status != MSGQ_E_FULL || now_ns() >= until)
			break;
		sleep_us(5000); /* refused as full: nothing moved */
	}
	expect("remapped send of the probe", r == 1 ? ps_send.status : -1, MSGQ_OK, fm_status_name);
	printf("ferry-msg: the probe travelled %s\n", ps_send.how == MSGQ_HOW_REMAPPED ? "remapped" : "NOT remapped");
	failures += ps_send.how != MSGQ_HOW_REMAPPED;
	unsigned still = 0;
	for (uint32_t k = 4; k < ps; k++)
		still += buf[k] == PATTERN_1;
	printf("ferry-msg: after sending, %u of %u probe bytes still in the sender's slot: %s\n", still, ps - 4,
	       still == 0 ? "ok" : "FAILED");
	failures += still != 0;
	memset(buf, PATTERN_2, ps); /* must never reach the receiver */
	st = send_word_while_full(q, victim, SEC_CHECK);
	if (st != MSGQ_OK) {
		/* Without it the victim sends no verdict. */
		printf("ferry-msg: the check order: %s: FAILED\n", st < 0 ? strerror(-st) : fm_status_name(st));
		failures++;
	}
	bool verdict = false;
	struct ferry_msgq_msg m;
	/* As long as the victim may take: a loaded host is no failure. */
	while (fm_recv(q, &m, 1, (int)arg_u64("wait_s", 300) * 1000, NULL, 0, 0) == 1) {
		uint32_t word = first_word(q, &m), ok = 0;
		if (word == SEC_VERDICT && m.len >= 8)
			memcpy(&ok, fm_msg_data(q, &m) + 4, 4);
		struct ferry_msgq_return rr = { m.slot, m.nr_pages };
		fm_recv(q, NULL, 0, 0, &rr, 1, FERRY_MSGQ_IMMEDIATE);
		if (word == SEC_VERDICT) {
			verdict = ok == 1;
			break;
		}
	}
	printf("ferry-msg: victim says the probe kept its contents after the sender's writes: %s\n",
	       verdict ? "ok" : "FAILED");
	failures += !verdict;
	send_word(q, victim, SEC_DONE);
	printf("ferry-msg: %s\n", failures ? "FAILED" : "every misuse was refused");
	return failures ? 1 : 0;
}

/* The page window's guest-physical address: BAR 2 of the msgq function,
 * from sysfs. */
static uint64_t window_phys(void)
{
	glob_t g;
	uint64_t addr = 0;
	if (glob("/sys/bus/pci/devices/*/device", 0, NULL, &g))
		return 0;
	for (size_t i = 0; i < g.gl_pathc && !addr; i++) {
		char path[512], line[128];
		FILE *f = fopen(g.gl_pathv[i], "r");
		bool msgq = f && fgets(line, sizeof(line), f) && strtoul(line, NULL, 0) == 0x1137;
		if (f)
			fclose(f);
		if (!msgq)
			continue;
		snprintf(path, sizeof(path), "%.*s/resource", (int)(strlen(g.gl_pathv[i]) - 7), g.gl_pathv[i]);
		f = fopen(path, "r");
		for (int bar = 0; f && fgets(line, sizeof(line), f); bar++)
			if (bar == MSGQ_WINDOW_BAR)
				addr = strtoull(line, NULL, 0);
		if (f)
			fclose(f);
	}
	globfree(&g);
	return addr;
}

/* Writes into a received page behind the driver's back, through /dev/mem
 * (as a kernel could): ferry must ignore it. True if the page is unchanged. */
static bool write_behind_driver(struct fm *q, const struct ferry_msgq_msg *m)
{
	uint64_t phys = window_phys();
	if (!phys) {
		printf("ferry-msg: cannot find the page window in sysfs\n");
		return false;
	}
	phys += q->info.recv_offset + m->offset;
	int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	volatile uint8_t *p = fd < 0 ? MAP_FAILED
				   : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(phys & ~4095ull));
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED) {
		printf("ferry-msg: /dev/mem at 0x%" PRIx64 ": %s\n", phys, strerror(errno));
		return false;
	}
	volatile uint8_t *b = p + (phys & 4095) + 100;
	uint8_t before = *b;
	*b = (uint8_t)~before;
	bool unchanged = *b == before && fm_msg_data(q, m)[100] == before;
	munmap((void *)p, 4096);
	return unchanged;
}

static int victim(struct fm *q)
{
	uint32_t attacker = fm_peer(q, arg_str("peer", ""));
	/* Every slot, and the release order. */
	struct ferry_msgq_msg *held = calloc(q->info.recv_slots + 1, sizeof(*held)), probe = { 0 };
	unsigned nheld = 0, held_pages = 0;
	bool holding = false, have_probe = false;
	int bad = 0;
	if (!held || !attacker)
		return 2;
	for (;;) {
		struct ferry_msgq_msg m;
		/* Holding every receive slot, the victim is full for sure; then a
		 * pause means the attacker saw it and waits. Before that, a pause
		 * is only a slow attacker. */
		bool all_held = holding && held_pages >= q->info.recv_slots;
		int got = fm_recv(q, &m, 1, all_held ? 200 : 300000, NULL, 0, 0);
		uint32_t w = got == 1 ? first_word(q, &m) : 0;
		if (got != 1 && !all_held)
			break;
		/* Holding every slot and a pause: the attacker was refused and
		 * waits. Or its release order got in, through a slot given back
		 * (the fill order's) that the device took back only when a send
		 * needed it: then the attacker was refused with a slot still
		 * ours, we hold less than every slot, and the order says to let
		 * go. */
		if (got != 1 || (holding && w == SEC_RELEASE)) {
			if (got == 1)
				held[nheld++] = m; /* the order goes back with the rest */
			printf("ferry-msg: victim held %u messages until %s\n", nheld,
			       got == 1 ? "told to let go" : "the attacker was refused");
			/* All in one call: the device sees them back together, so
			 * the attacker's first accepted send means room for the
			 * next (returned one by one, the device may take them
			 * one by one as sends need the room). */
			struct ferry_msgq_return *rs = calloc(nheld ? nheld : 1, sizeof(*rs));
			if (!rs)
				return 1;
			for (unsigned i = 0; i < nheld; i++)
				rs[i] = (struct ferry_msgq_return){ held[i].slot, held[i].nr_pages };
			int e = fm_recv(q, NULL, 0, 0, rs, nheld, FERRY_MSGQ_IMMEDIATE);
			free(rs);
			if (e < 0) {
				printf("ferry-msg: victim could not give back what it held: %s\n", strerror(-e));
				bad++;
			}
			nheld = 0;
			held_pages = 0;
			holding = false;
			continue;
		}
		struct ferry_msgq_return r = { m.slot, m.nr_pages };
		if (w == SEC_DONE) {
			fm_recv(q, NULL, 0, 0, &r, 1, FERRY_MSGQ_IMMEDIATE);
			break;
		} else if (w == SEC_FILL) {
			holding = true;
			fm_recv(q, NULL, 0, 0, &r, 1, 0);
		} else if (w == SEC_PROBE) {
			probe = m;
			have_probe = true;
			printf("ferry-msg: victim got the probe %s from vm %u\n",
			       m.flags & MSGQ_RECV_REMAPPED ? "remapped" : "COPIED", m.src);
			bad += !(m.flags & MSGQ_RECV_REMAPPED) || m.src != attacker;
			bool unchanged = write_behind_driver(q, &m);
			printf("ferry-msg: victim's write into a received page through /dev/mem: %s\n",
			       unchanged ? "ignored, ok" : "LANDED, FAILED");
			bad += !unchanged;
		} else if (w == SEC_CHECK) {
			bool ok = have_probe && probe.len > 4;
			const uint8_t *d = have_probe ? fm_msg_data(q, &probe) : NULL;
			for (uint32_t k = 4; ok && k < probe.len; k++)
				ok = d[k] == PATTERN_1;
			fm_recv(q, NULL, 0, 0, &r, 1, 0);
			if (have_probe) {
				struct ferry_msgq_return pr = { probe.slot, probe.nr_pages };
				fm_recv(q, NULL, 0, 0, &pr, 1, FERRY_MSGQ_IMMEDIATE);
			}
			uint32_t slot, v[2] = { SEC_VERDICT, ok };
			if (fm_alloc(q, 8, &slot))
				return 1;
			memcpy(fm_slot(q, slot), v, 8);
			if (fm_send1(q, attacker, slot, 8, MSGQ_SEND_COPY, true) != MSGQ_OK)
				bad++;
			fm_free(q, slot, 8);
		} else if (holding && nheld < q->info.recv_slots) {
			held[nheld++] = m;
			held_pages += m.nr_pages;
		} else {
			fm_recv(q, NULL, 0, 0, &r, 1, holding ? 0 : FERRY_MSGQ_IMMEDIATE);
		}
	}
	free(held);
	printf("ferry-msg: victim %s\n", bad ? "FAILED" : "ok");
	return bad ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------- */

static int run_kv(const char *cmd, int argc, char **argv)
{
	kv_argc = argc;
	kv_argv = argv;
	const char *role = arg_str("role", "");
	struct fm q;
	if (open_queue(&q))
		return 1;
	int r = 2;
	if (!strcmp(cmd, "bench"))
		r = !strcmp(role, "send") ? bench_send(&q) : !strcmp(role, "recv") ? bench_recv(&q) : 2;
	else if (!strcmp(cmd, "ping"))
		r = !strcmp(role, "ping") ? ping_ping(&q) : !strcmp(role, "pong") ? ping_pong(&q) : 2;
	else if (!strcmp(cmd, "security"))
		r = !strcmp(role, "attack") ? attack(&q) : !strcmp(role, "victim") ? victim(&q) : 2;
	if (r == 2 && !*role)
		fprintf(stderr, "ferry-msg %s: role=... is missing\n", cmd);
	struct ferry_msgq_stats st;
	if (!fm_stats(&q, &st))
		printf("ferry-msg: driver: %llu posted in %llu doorbells, %llu completed (%llu refused), %llu received, "
		       "%llu pages returned, %llu+%llu interrupts, %llu bad headers\n",
		       (unsigned long long)st.posted, (unsigned long long)st.immediate_batches,
		       (unsigned long long)st.completed, (unsigned long long)st.refused, (unsigned long long)st.received,
		       (unsigned long long)st.returned_pages, (unsigned long long)st.send_interrupts,
		       (unsigned long long)st.recv_interrupts, (unsigned long long)st.bad_headers);
	fm_close(&q);
	return r;
}

static const char usage[] =
	"usage: ferry-msg info\n"
	"       ferry-msg send [--copy|--remap] [--deferred] PEER [FILE]\n"
	"       ferry-msg recv [--count N] [--timeout MS] [--data]\n"
	"       ferry-msg bench role=send peer=NAME [sizes=64,4K,64K] [count=N] [mode=copy|remap|adaptive]\n"
	"                       [post=immediate|deferred] [batch=N] [check=full|header]\n"
	"       ferry-msg bench role=recv [sessions=N] [timeout_ms=N]   (N sender invocations in turn)\n"
	"       ferry-msg ping role=ping peer=NAME [count=N] [size=BYTES] [mode=...] [post=...]\n"
	"       ferry-msg ping role=pong [mode=...] [post=...]\n"
	"       ferry-msg security role=attack peer=VICTIM gone=NAME denied_id=N\n"
	"       ferry-msg security role=victim peer=ATTACKER\n"
	"(dev=/dev/ferry-msgqN picks another device for bench, ping and security)\n";

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "info"))
		return cmd_info();
	if (!strcmp(cmd, "send"))
		return cmd_send(argc - 1, argv + 1);
	if (!strcmp(cmd, "recv"))
		return cmd_recv(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench") || !strcmp(cmd, "ping") || !strcmp(cmd, "security"))
		return run_kv(cmd, argc - 2, argv + 2);
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		fputs(usage, stdout);
		return 0;
	}
	fputs(usage, stderr);
	return 2;
}
