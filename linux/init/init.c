/* The test init of ferry's Linux guest (linux/README.md). It runs as PID 1
 * from the initramfs, checks the devices the command line asks for with
 * Linux's own drivers, prints one "linux-init: ..." line per result and
 * powers the VM off with status 0 if everything passed, 1 if not.
 *
 * Command line (read from /proc/cmdline; dotted names are not passed to init):
 *   ferry.expect=rng,balloon,net  devices that must be present and bound
 *   ferry.rng=N                   read N bytes from /dev/hwrng (default 4096)
 *   ferry.touch=MIB               touch and free MIB of memory first (so the
 *                                 host has resident pages to get back)
 *   ferry.balloon=MIB             wait for the host to inflate the balloon by
 *                                 at least MIB and deflate it again
 *   ferry.reporting=S             wait S seconds for free page reporting
 *   ferry.ecam=ADDR               read PCI configuration space through the
 *                                 ECAM window at ADDR (via /dev/mem)
 *   ferry.timeout=S               give up waiting after S seconds (default 120)
 *   ferry.exit=port|acpi          power off through the isa-debug-exit port
 *                                 (default) or through ACPI (reboot(2))
 *   ferry.cpus=N                  N CPUs must be online at start
 *   ferry.reserve=K               wait for the host to park K CPUs (through
 *                                 cpu-reserve and ferry_cpu_reserve.ko) and to
 *                                 release them, watching /sys/devices/system/cpu
 *   ferry.msg="CMD ARGS;CMD ARGS" run /bin/ferry-msg CMD ARGS for each, in
 *                                 order; each must exit 0
 *   ferry.net=ADDR/PREFIX         give eth0 this address and bring it up
 *   ferry.ping=IP                 ICMP echo round trips to IP (raw socket)
 *   ferry.udp=IP:PORT             UDP datagrams to an echo server, each checked
 *   ferry.pinged=N                wait until this kernel has answered N pings
 *   ferry.cat=PATH,PATH           print these files at the end (debugging)
 *
 * ferry's modules (in /lib/modules/ferry) are loaded for the devices that
 * are present (as udev would by modalias): ferry_virtio_pci for PCI
 * functions 1af4:1137 and 1af4:1138, then ferry_msgq for msgq (virtio type
 * 0xf7), ferry_cpu_reserve for cpu-reserve (0xf8).
 *
 * Ring-3 `in`/`out` fault on the project's hosts, so the debug-exit port is
 * written through /dev/port. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define DEBUG_EXIT_PORT 0x501

static char cmdline[4096];
static int failures;

static double uptime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "linux-init: [%7.3f] ", uptime());
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(buf, "\n");
	/* One write per line: the console is shared with the kernel's printk. */
	if (write(1, buf, strlen(buf)) < 0)
		return;
}

#define fail(...) do { failures++; say("FAIL " __VA_ARGS__); } while (0)

static size_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	if (fd < 0) {
		buf[0] = 0;
		return 0;
	}
	while (got + 1 < len) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = 0;
	while (got && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
		buf[--got] = 0;
	return got;
}

/* Value of key=value on the kernel command line, or NULL. A value may be
 * quoted (key="a b c"), as the kernel allows; the quotes are dropped. */
static const char *param(const char *key, char *val, size_t len)
{
	size_t klen = strlen(key);
	for (const char *p = cmdline; *p;) {
		while (*p == ' ')
			p++;
		/* The end of this word: a space outside quotes. */
		const char *end = p;
		bool quoted = false;
		for (; *end && (quoted || *end != ' '); end++)
			if (*end == '"')
				quoted = !quoted;
		if ((size_t)(end - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			const char *v = p + klen + 1, *vend = end;
			if (*v == '"') {
				v++;
				if (vend > v && vend[-1] == '"')
					vend--;
			}
			size_t n = (size_t)(vend - v);
			if (n >= len)
				n = len - 1;
			memcpy(val, v, n);
			val[n] = 0;
			return val;
		}
		p = end;
	}
	return NULL;
}

static long param_long(const char *key, long dflt)
{
	char v[64];
	return param(key, v, sizeof(v)) ? strtol(v, NULL, 0) : dflt;
}

static bool expected(const char *what)
{
	char v[256];
	if (!param("ferry.expect", v, sizeof(v)))
		return false;
	for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ","))
		if (!strcmp(tok, what))
			return true;
	return false;
}

static void driver_of(const char *dev_dir, char *out, size_t len)
{
	char link[PATH_MAX], target[PATH_MAX];
	snprintf(link, sizeof(link), "%s/driver", dev_dir);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		snprintf(out, len, "none");
		return;
	}
	target[n] = 0;
	const char *base = strrchr(target, '/');
	snprintf(out, len, "%s", base ? base + 1 : target);
}

static void list_pci(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int n = 0;
	if (!d) {
		fail("no /sys/bus/pci/devices: the kernel found no PCI bus");
		return;
	}
	while ((e = readdir(d))) {
		char dir[PATH_MAX], path[PATH_MAX + 16], vendor[16], device[16], drv[64];
		if (e->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s", e->d_name);
		snprintf(path, sizeof(path), "%s/vendor", dir);
		read_file(path, vendor, sizeof(vendor));
		snprintf(path, sizeof(path), "%s/device", dir);
		read_file(path, device, sizeof(device));
		driver_of(dir, drv, sizeof(drv));
		say("pci %s %s:%s driver=%s", e->d_name, vendor + 2, device + 2, drv);
		n++;
	}
	closedir(d);
	say("pci: %d functions", n);
}

/* Whether a PCI function with these IDs exists. */
static bool pci_present(unsigned vendor, unsigned device)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		char path[PATH_MAX], v[16], id[16];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		read_file(path, v, sizeof(v));
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
		read_file(path, id, sizeof(id));
		found = strtoul(v, NULL, 0) == vendor && strtoul(id, NULL, 0) == device;
	}
	if (d)
		closedir(d);
	return found;
}

/* Finds the virtio device of a type (virtio device ID) and its driver. */
static bool find_virtio(unsigned type, char *name, size_t nlen, char *drv, size_t dlen)
{
	DIR *d = opendir("/sys/bus/virtio/devices");
	struct dirent *e;
	bool found = false;
	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		char dir[PATH_MAX], path[PATH_MAX + 16], id[16];
		if (e->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "/sys/bus/virtio/devices/%s", e->d_name);
		snprintf(path, sizeof(path), "%s/device", dir);
		read_file(path, id, sizeof(id));
		if (strtoul(id, NULL, 0) == type) {
			snprintf(name, nlen, "%s", e->d_name);
			driver_of(dir, drv, dlen);
			found = true;
		}
	}
	closedir(d);
	return found;
}

/* what: the name in ferry.expect ("rng"); messages say "virtio-rng". */
static bool check_virtio(const char *what, unsigned type, const char *want_driver)
{
	char name[64], drv[64];
	if (!find_virtio(type, name, sizeof(name), drv, sizeof(drv))) {
		if (expected(what))
			fail("virtio-%s: no virtio device of type %u", what, type);
		return false;
	}
	if (strcmp(drv, want_driver)) {
		fail("virtio-%s: %s is bound to %s, not %s", what, name, drv, want_driver);
		return false;
	}
	say("virtio-%s: %s bound to %s", what, name, drv);
	return true;
}

static void test_rng(void)
{
	long want = param_long("ferry.rng", 4096);
	char cur[64];
	static uint8_t buf[1 << 16];
	if (want <= 0 || want > (long)sizeof(buf))
		want = 4096;
	read_file("/sys/class/misc/hw_random/rng_current", cur, sizeof(cur));
	int fd = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail("virtio-rng: open /dev/hwrng: %s", strerror(errno));
		return;
	}
	double t0 = uptime();
	long got = 0;
	while (got < want) {
		ssize_t n = read(fd, buf + got, (size_t)(want - got));
		if (n <= 0) {
			fail("virtio-rng: read /dev/hwrng: %s", n ? strerror(errno) : "end of file");
			close(fd);
			return;
		}
		got += n;
	}
	close(fd);
	/* FNV-1a, and how many byte values occur: random data has nearly all. */
	uint32_t h = 2166136261u;
	bool seen[256] = { false };
	int distinct = 0;
	for (long i = 0; i < got; i++) {
		h = (h ^ buf[i]) * 16777619u;
		if (!seen[buf[i]]) {
			seen[buf[i]] = true;
			distinct++;
		}
	}
	if (strcmp(cur, "virtio_rng.0") || (got >= 4096 && distinct < 200))
		fail("virtio-rng: rng_current=%s, %ld bytes with %d distinct values", cur, got, distinct);
	else
		say("virtio-rng ok: rng_current=%s read %ld bytes in %.3f s fnv1a=%08x distinct=%d", cur, got,
		    uptime() - t0, h, distinct);
}

static long vmstat(const char *key)
{
	static char buf[16384];
	size_t klen = strlen(key);
	read_file("/proc/vmstat", buf, sizeof(buf));
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (!strncmp(line, key, klen) && line[klen] == ' ')
			return strtol(line + klen + 1, NULL, 10);
	return -1;
}

static long meminfo(const char *key)
{
	char buf[4096];
	size_t klen = strlen(key);
	read_file("/proc/meminfo", buf, sizeof(buf));
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (!strncmp(line, key, klen) && line[klen] == ':')
			return strtol(line + klen + 1, NULL, 10);
	return -1;
}

/* Touches MIB of anonymous memory and gives it back to the kernel, so the
 * host has resident guest pages that the balloon can return. */
static void touch(long mib)
{
	size_t len = (size_t)mib << 20;
	double t0 = uptime();
	/* Each first touch is a page fault that costs milliseconds of
	 * interpreted ring 0 on the project's hosts (no huge pages there:
	 * the guest sees no PSE), so callers keep this small. */
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fail("touch: mmap %ld MiB: %s", mib, strerror(errno));
		return;
	}
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 1;
	munmap(p, len);
	say("touched and freed %ld MiB in %.3f s", mib, uptime() - t0);
}

static void test_balloon(long mib, long timeout)
{
	long want = mib << 8; /* 4 KiB pages */
	long in0 = vmstat("balloon_inflate"), out0 = vmstat("balloon_deflate");
	long total0 = meminfo("MemTotal");
	if (in0 < 0 || out0 < 0) {
		fail("virtio-balloon: no balloon counters in /proc/vmstat");
		return;
	}
	say("virtio-balloon: waiting for the host to inflate >= %ld MiB (MemTotal %ld kB)", mib, total0);
	double t0 = uptime(), t_full = 0;
	long peak = 0, last_in = in0, last_out = out0;
	for (;;) {
		long in = vmstat("balloon_inflate") - in0, out = vmstat("balloon_deflate") - out0;
		long held = in - out;
		if (held > peak)
			peak = held;
		if (in != last_in || out != last_out) {
			last_in = in;
			last_out = out;
			if (!t_full && held >= want) {
				t_full = uptime();
				say("virtio-balloon: inflated %ld pages (MemTotal %ld kB)", held, meminfo("MemTotal"));
			}
		}
		/* All of it went in and came back out. (The peak seen is only
		 * reported: sampled every 50 ms on a loaded host, it can miss the
		 * moment the balloon was full; the host checks that moment.) */
		if (in >= want && out >= in && held == 0) {
			say("virtio-balloon ok: inflated %ld pages, deflated %ld pages, MemTotal %ld kB (peak seen %ld)", in,
			    out, meminfo("MemTotal"), peak);
			return;
		}
		if (uptime() - t0 > (double)timeout) {
			fail("virtio-balloon: after %ld s: %ld pages inflated, %ld deflated, peak %ld of %ld", timeout,
			     in, out, peak, want);
			return;
		}
		usleep(50 * 1000);
	}
}

static void test_reporting(long timeout)
{
	/* The balloon driver reports free 2 MiB blocks a few seconds after they
	 * are freed; the kernel counts none of it, so just give it time. The
	 * host checks its counter. */
	say("virtio-balloon: free page reporting: waiting %ld s", timeout);
	sleep((unsigned)timeout);
}

/* Reads the ECAM window from ring 3 and compares it with what Linux found
 * through its own configuration access (sysfs): every function on bus 0
 * that sysfs lists has the same vendor and device ID in ECAM, every slot it
 * does not list reads all ones. Prints what the extended space (offset
 * 0x100) of 00:00.0 reads: ferry answers 0, QEMU all ones. */
static void test_ecam(unsigned long base)
{
	int fd = open("/dev/mem", O_RDONLY | O_SYNC | O_CLOEXEC);
	if (fd < 0) {
		fail("ecam: open /dev/mem: %s", strerror(errno));
		return;
	}
	const size_t len = 32 << 15; /* bus 0: 32 devices x 8 functions x 4 KiB */
	volatile uint32_t *cfg = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)base);
	close(fd);
	if (cfg == MAP_FAILED) {
		fail("ecam: mmap 0x%lx: %s", base, strerror(errno));
		return;
	}
	int present = 0, bad = 0;
	for (unsigned dev = 0; dev < 32; dev++) {
		char path[96], vendor[16] = "", device[16] = "";
		uint32_t v = cfg[(dev << 15) / 4];
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/0000:00:%02x.0/vendor", dev);
		bool listed = read_file(path, vendor, sizeof(vendor)) > 0;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/0000:00:%02x.0/device", dev);
		read_file(path, device, sizeof(device));
		uint32_t want = listed ? (uint32_t)(strtoul(device, NULL, 0) << 16 | strtoul(vendor, NULL, 0))
				       : 0xffffffffu;
		if (v != want) {
			say("ecam: 00:%02x.0 reads %08x, configuration mechanism gave %08x", dev, v, want);
			bad++;
		}
		present += listed;
	}
	uint32_t ext = cfg[0x100 / 4], last = cfg[0xffc / 4];
	munmap((void *)cfg, len);
	if (bad || !present)
		fail("ecam: %d of 32 slots differ from sysfs, %d functions", bad, present);
	else
		say("ecam ok: %d functions match sysfs, empty slots read all ones; extended space of 00:00.0 "
		    "reads %08x at 0x100, %08x at 0xffc", present, ext, last);
}

/* ---- ferry's modules ---------------------------------------------------- */

/* Loads a module from the initramfs (no modprobe here: finit_module). */
static bool load_module(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "/lib/modules/ferry/%s.ko", name);
	double t0 = uptime();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) < 0) {
		fail("module %s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	say("module %s loaded in %.3f s", name, uptime() - t0);
	return true;
}

/* ---- networking ---------------------------------------------------------- */

static uint16_t inet_csum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* eth0 gets ADDR/PREFIX and comes up: the kernel adds the subnet's route. */
static bool net_configure(const char *cidr)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "%s", cidr);
	char *slash = strchr(addr, '/');
	int prefix = slash ? atoi(slash + 1) : 24;
	if (slash)
		*slash = 0;
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
	sin->sin_family = AF_INET;
	bool ok = fd >= 0 && prefix > 0 && prefix <= 32 && inet_pton(AF_INET, addr, &sin->sin_addr) == 1 &&
		  ioctl(fd, SIOCSIFADDR, &ifr) == 0;
	sin->sin_addr.s_addr = htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix));
	ok = ok && ioctl(fd, SIOCSIFNETMASK, &ifr) == 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
	if (!ok)
		fail("virtio-net: cannot configure eth0 as %s: %s", cidr, strerror(errno));
	else
		say("virtio-net: eth0 up as %s", cidr);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* ICMP echo to ip, from a raw socket: the first reply may take a while
 * (the peer may still be booting; ARP), then `count` must each come back
 * with the payload intact, within ECHO_WAIT_S: a correctness check, not a
 * timing one (on a loaded 2-CPU host an interpreted kernel once took over
 * a second to answer). */
#define ECHO_WAIT_S 10

static void test_ping(const char *ip, int count, long timeout)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (fd < 0 || inet_pton(AF_INET, ip, &to.sin_addr) != 1) {
		fail("ping %s: %s", ip, strerror(errno));
		return;
	}
	uint16_t id = (uint16_t)getpid();
	double rtt[64];
	int got = 0, lost = 0, corrupt = 0;
	double first_deadline = uptime() + (double)timeout;
	for (int seq = 0; got + lost < count;) {
		uint8_t pkt[64 + sizeof(struct icmphdr)];
		struct icmphdr *h = (struct icmphdr *)pkt;
		memset(pkt, 0, sizeof(pkt));
		h->type = ICMP_ECHO;
		h->un.echo.id = htons(id);
		h->un.echo.sequence = htons((uint16_t)seq);
		for (size_t i = sizeof(*h); i < sizeof(pkt); i++)
			pkt[i] = (uint8_t)(seq * 7 + i);
		h->checksum = inet_csum(pkt, sizeof(pkt));
		double t0 = uptime();
		if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)sizeof(pkt)) {
			fail("ping %s: sendto: %s", ip, strerror(errno));
			break;
		}
		bool answered = false;
		while (!answered && uptime() - t0 < ECHO_WAIT_S) {
			struct pollfd p = { fd, POLLIN, 0 };
			uint8_t in[256];
			if (poll(&p, 1, 100) <= 0)
				continue;
			ssize_t n = recv(fd, in, sizeof(in), 0);
			if (n < (ssize_t)sizeof(struct iphdr))
				continue;
			size_t ihl = (size_t)(in[0] & 15) * 4;
			struct icmphdr *r = (struct icmphdr *)(in + ihl);
			if ((size_t)n < ihl + sizeof(pkt) || r->type != ICMP_ECHOREPLY || ntohs(r->un.echo.id) != id ||
			    ntohs(r->un.echo.sequence) != (uint16_t)seq)
				continue;
			answered = true;
			corrupt += memcmp(in + ihl + sizeof(*h), pkt + sizeof(*h), sizeof(pkt) - sizeof(*h)) != 0;
			if (got < 64)
				rtt[got] = (uptime() - t0) * 1e6;
			got++;
		}
		seq++;
		/* Before the first answer the peer may not be there yet. */
		if (!answered && got == 0 && uptime() < first_deadline)
			continue;
		if (!answered)
			lost++;
	}
	close(fd);
	int n = got < 64 ? got : 64;
	qsort(rtt, (size_t)n, sizeof(rtt[0]), cmp_double);
	if (lost || corrupt || !got)
		fail("ping %s: %d answered, %d lost, %d corrupt", ip, got, lost, corrupt);
	else
		say("ping ok: %s answered %d of %d, payloads intact, rtt p50 %.0f us max %.0f us", ip, got, count,
		    rtt[n / 2], rtt[n - 1]);
}

/* Datagrams of several sizes to an echo server, each compared when it
 * comes back. */
static void test_udp(const char *spec, int count)
{
	char ip[64];
	snprintf(ip, sizeof(ip), "%s", spec);
	char *colon = strchr(ip, ':');
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(colon ? (uint16_t)atoi(colon + 1) : 7) };
	if (colon)
		*colon = 0;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || inet_pton(AF_INET, ip, &to.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		fail("udp %s: %s", spec, strerror(errno));
		return;
	}
	static const size_t sizes[] = { 1, 64, 512, 1400, 1472 };
	int ok = 0, bad = 0;
	double rtt[64];
	for (int i = 0; i < count; i++) {
		uint8_t out[1472], in[2048];
		size_t len = sizes[i % 5];
		for (size_t k = 0; k < len; k++)
			out[k] = (uint8_t)(i * 31 + k * 7);
		double t0 = uptime();
		if (send(fd, out, len, 0) != (ssize_t)len) {
			bad++;
			continue;
		}
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n = poll(&p, 1, ECHO_WAIT_S * 1000) == 1 ? recv(fd, in, sizeof(in), 0) : -1;
		if (n == (ssize_t)len && !memcmp(in, out, len)) {
			if (ok < 64)
				rtt[ok] = (uptime() - t0) * 1e6;
			ok++;
		} else {
			bad++;
		}
	}
	close(fd);
	int n = ok < 64 ? ok : 64;
	qsort(rtt, (size_t)n, sizeof(rtt[0]), cmp_double);
	if (bad || !ok)
		fail("udp %s: %d of %d datagrams echoed intact", spec, ok, count);
	else
		say("udp ok: %s echoed %d datagrams of 1-1472 bytes intact, rtt p50 %.0f us", spec, ok, rtt[n / 2]);
}

/* A counter of /proc/net/snmp ("Icmp", "OutEchoReps"). */
static long snmp(const char *proto, const char *field)
{
	static char buf[8192];
	read_file("/proc/net/snmp", buf, sizeof(buf));
	size_t plen = strlen(proto);
	char *names = NULL;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, proto, plen) || line[plen] != ':')
			continue;
		if (!names) {
			names = line;
			continue;
		}
		/* The values line: walk both lines' words together. */
		char *ns = names + plen + 1, *vs = line + plen + 1;
		for (;;) {
			while (*ns == ' ')
				ns++;
			while (*vs == ' ')
				vs++;
			if (!*ns || !*vs)
				return -1;
			size_t nl = strcspn(ns, " ");
			if (nl == strlen(field) && !strncmp(ns, field, nl))
				return strtol(vs, NULL, 10);
			ns += nl;
			vs += strcspn(vs, " ");
		}
	}
	return -1;
}

static void wait_pinged(long want, long timeout)
{
	double t0 = uptime();
	long n;
	while ((n = snmp("Icmp", "OutEchoReps")) < want && uptime() - t0 < (double)timeout)
		usleep(100 * 1000);
	if (n < want)
		fail("pinged: answered %ld echo requests in %ld s, want %ld", n, timeout, want);
	else
		say("pinged ok: this kernel answered %ld echo requests", n);
}

static void test_net(void)
{
	char buf[256];
	if (!read_file("/sys/class/net/eth0/address", buf, sizeof(buf))) {
		fail("virtio-net: no eth0");
		return;
	}
	say("virtio-net: eth0 %s", buf);
	long timeout = param_long("ferry.timeout", 120);
	if (!param("ferry.net", buf, sizeof(buf)) || !net_configure(buf))
		return;
	if (param("ferry.ping", buf, sizeof(buf)))
		test_ping(buf, 10, timeout);
	if (param("ferry.udp", buf, sizeof(buf)))
		test_udp(buf, 20);
	long pinged = param_long("ferry.pinged", 0);
	if (pinged > 0)
		wait_pinged(pinged, timeout);
}

/* ---- CPUs ---------------------------------------------------------------- */

/* CPUs in a list like "0-1,3". */
static int cpu_count(const char *path)
{
	char buf[256];
	int n = 0;
	if (!read_file(path, buf, sizeof(buf)))
		return 0;
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		int a, b;
		if (sscanf(tok, "%d-%d", &a, &b) == 2)
			n += b - a + 1;
		else if (sscanf(tok, "%d", &a) == 1)
			n++;
	}
	return n;
}

/* Waits until `want` CPUs are online; the CPUs that are offline, each from
 * its own cpuN/online file. */
static bool wait_online(int want, long timeout, char *offline, size_t len)
{
	double t0 = uptime();
	while (cpu_count("/sys/devices/system/cpu/online") != want) {
		if (uptime() - t0 > (double)timeout)
			return false;
		usleep(50 * 1000);
	}
	offline[0] = 0;
	int present = cpu_count("/sys/devices/system/cpu/present");
	for (int c = 1; c < present; c++) {
		char path[64], v[8];
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", c);
		if (read_file(path, v, sizeof(v)) && !strcmp(v, "0"))
			snprintf(offline + strlen(offline), len - strlen(offline), " cpu%d", c);
	}
	return true;
}

static void test_reserve(int park, long timeout)
{
	/* Present, not online: the host may have asked already, and the
	 * driver parked a CPU as soon as it was loaded. */
	int online = cpu_count("/sys/devices/system/cpu/present");
	char off[128];
	say("cpu-reserve: waiting for the host to park %d of %d CPUs", park, online);
	double t0 = uptime();
	if (!wait_online(online - park, timeout, off, sizeof(off))) {
		fail("cpu-reserve: %d CPUs still online after %ld s", cpu_count("/sys/devices/system/cpu/online"), timeout);
		return;
	}
	say("cpu-reserve: parked after %.3f s, offline:%s", uptime() - t0, off);
	/* Work goes on on the CPUs left. */
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	int st = -1;
	waitpid(child, &st, 0);
	t0 = uptime();
	if (!wait_online(online, timeout, off, sizeof(off))) {
		fail("cpu-reserve: not released after %ld s", timeout);
		return;
	}
	say("cpu-reserve ok: released after %.3f s, %d CPUs online again, a process ran meanwhile (status %d)",
	    uptime() - t0, online, st);
}

/* ---- ferry-msg ----------------------------------------------------------- */

/* Runs /bin/ferry-msg with the words of cmd; its output goes to the console. */
static void run_ferry_msg(char *cmd)
{
	char *argv[32];
	int n = 0;
	argv[n++] = "/bin/ferry-msg";
	for (char *w = strtok(cmd, " "); w && n < 31; w = strtok(NULL, " "))
		argv[n++] = w;
	argv[n] = NULL;
	if (n < 2)
		return;
	say("running ferry-msg %s", argv[1]);
	double t0 = uptime();
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		fail("ferry-msg %s: %s", argv[1], strerror(errno));
	else if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail("ferry-msg %s: exit status %d after %.3f s", argv[1], WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		     uptime() - t0);
	else
		say("ferry-msg %s ok in %.3f s", argv[1], uptime() - t0);
}

static void run_ferry_msgs(void)
{
	static char v[2048];
	if (!param("ferry.msg", v, sizeof(v)))
		return;
	/* strtok in run_ferry_msg: split the commands first. */
	char *cmds[16];
	int n = 0;
	for (char *c = v, *end; c && n < 16; c = end) {
		end = strchr(c, ';');
		if (end)
			*end++ = 0;
		cmds[n++] = c;
	}
	for (int i = 0; i < n; i++)
		run_ferry_msg(cmds[i]);
}

static void power_off(int status)
{
	char how[16];
	if (!param("ferry.exit", how, sizeof(how)))
		strcpy(how, "port");
	say("powering off (%s) with status %d", how, status);
	sync();
	/* Every line out of the UART first: the port write ends the VM at
	 * once, and the 8250 driver sends from its interrupt handler, which
	 * can lag behind (it did, by the last two lines, on a loaded host). */
	if (tcdrain(1) < 0)
		say("tcdrain: %s", strerror(errno));
	if (!strcmp(how, "acpi")) {
		if (status == 0)
			reboot(RB_POWER_OFF);
		say("ACPI power-off carries no status; status %d goes through the port", status);
	}
	int fd = open("/dev/port", O_WRONLY | O_CLOEXEC);
	uint8_t v = (uint8_t)status;
	if (fd < 0 || pwrite(fd, &v, 1, DEBUG_EXIT_PORT) != 1)
		say("cannot write the debug-exit port: %s", strerror(errno));
	/* Not reached on ferry or on QEMU with isa-debug-exit. */
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

int main(void)
{
	mkdir("/dev", 0755);
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) < 0 && errno != EBUSY)
		say("mount /dev: %s", strerror(errno));
	if (mount("proc", "/proc", "proc", 0, NULL) < 0)
		say("mount /proc: %s", strerror(errno));
	if (mount("sysfs", "/sys", "sysfs", 0, NULL) < 0)
		say("mount /sys: %s", strerror(errno));
	read_file("/proc/cmdline", cmdline, sizeof(cmdline));
	say("user space reached, pid %d", (int)getpid());

	long timeout = param_long("ferry.timeout", 120);
	long cpus = param_long("ferry.cpus", 0);
	if (cpus > 0) {
		int online = cpu_count("/sys/devices/system/cpu/online");
		if (online != cpus)
			fail("smp: %d CPUs online, want %ld", online, cpus);
		else
			say("smp: %d CPUs online", online);
	}
	list_pci();
	char name[64], drv[64];
	/* ferry's own device types have PCI IDs outside virtio's range, which
	 * Linux's virtio_pci leaves alone: ferry_virtio_pci binds them. */
	if (pci_present(0x1af4, 0x1137) || pci_present(0x1af4, 0x1138))
		load_module("ferry_virtio_pci");
	if (find_virtio(0xf7, name, sizeof(name), drv, sizeof(drv)))
		load_module("ferry_msgq");
	if (find_virtio(0xf8, name, sizeof(name), drv, sizeof(drv)))
		load_module("ferry_cpu_reserve");
	if (check_virtio("msgq", 0xf7, "ferry_msgq") && access("/dev/ferry-msgq0", R_OK | W_OK))
		fail("virtio-msgq: no /dev/ferry-msgq0: %s", strerror(errno));
	check_virtio("cpu-reserve", 0xf8, "ferry_cpu_reserve");
	long reserve = param_long("ferry.reserve", 0);
	if (reserve > 0)
		test_reserve((int)reserve, timeout);
	if (check_virtio("rng", 4, "virtio_rng"))
		test_rng();
	bool balloon = check_virtio("balloon", 5, "virtio_balloon");
	long touch_mib = param_long("ferry.touch", 0);
	if (touch_mib > 0)
		touch(touch_mib);
	long balloon_mib = param_long("ferry.balloon", 0);
	if (balloon && balloon_mib > 0)
		test_balloon(balloon_mib, timeout);
	if (balloon && param_long("ferry.reporting", 0) > 0)
		test_reporting(param_long("ferry.reporting", 0));
	long ecam = param_long("ferry.ecam", 0);
	if (ecam)
		test_ecam((unsigned long)ecam);
	if (expected("net"))
		test_net();
	run_ferry_msgs();
	char cat[256];
	if (param("ferry.cat", cat, sizeof(cat)))
		for (char *path = strtok(cat, ","); path; path = strtok(NULL, ",")) {
			static char text[16384];
			size_t n = read_file(path, text, sizeof(text));
			say("%s:", path);
			if (write(1, text, n) < 0 || write(1, "\n", 1) < 0)
				break;
		}

	if (failures)
		say("%d checks failed", failures);
	else
		say("all checks passed");
	power_off(failures ? 1 : 0);
	return 0;
}
