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
 *
 * Ring-3 `in`/`out` fault on the project's hosts, so the debug-exit port is
 * written through /dev/port. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
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

/* Value of key=value on the kernel command line, or NULL. */
static const char *param(const char *key, char *val, size_t len)
{
	size_t klen = strlen(key);
	for (const char *p = cmdline; *p;) {
		while (*p == ' ')
			p++;
		const char *end = strchrnul(p, ' ');
		if ((size_t)(end - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			size_t n = (size_t)(end - p) - klen - 1;
			if (n >= len)
				n = len - 1;
			memcpy(val, p + klen + 1, n);
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

static void test_net(void)
{
	char buf[64];
	if (read_file("/sys/class/net/eth0/address", buf, sizeof(buf)))
		say("virtio-net: eth0 %s", buf);
	else
		fail("virtio-net: no eth0");
}

static void power_off(int status)
{
	char how[16];
	if (!param("ferry.exit", how, sizeof(how)))
		strcpy(how, "port");
	say("powering off (%s) with status %d", how, status);
	sync();
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
	list_pci();
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

	if (failures)
		say("%d checks failed", failures);
	else
		say("all checks passed");
	power_off(failures ? 1 : 0);
	return 0;
}
