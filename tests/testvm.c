#include "testvm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/bus.h"
#include "devices/msgq.h"
#include "ferry/pci_regs.h"
#include "ferry/virtio.h"
#include "host/eventloop.h"
#include "host/link.h"
#include "host/msgq_switch.h"
#include "host/net_switch.h"
#include "vmm/irq.h"

/* Kernels and console logs the config leaves out: nothing is loaded, and
 * consoles write nowhere unless asked. */
static char *fill_defaults(const char *json, char *err, size_t errlen)
{
	cJSON *root = cJSON_Parse(json);
	cJSON *vms = root ? cJSON_GetObjectItemCaseSensitive(root, "vms") : NULL;
	if (!cJSON_IsArray(vms)) {
		snprintf(err, errlen, "test VM config: not JSON with a \"vms\" array");
		cJSON_Delete(root);
		return NULL;
	}
	cJSON *v;
	cJSON_ArrayForEach(v, vms) {
		if (cJSON_IsObject(v) && !cJSON_HasObjectItem(v, "kernel"))
			cJSON_AddStringToObject(v, "kernel", "/dev/null");
		if (cJSON_IsObject(v) && !cJSON_HasObjectItem(v, "console_log"))
			cJSON_AddStringToObject(v, "console_log", "/dev/null");
	}
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text)
		snprintf(err, errlen, "out of memory");
	return text;
}

/* vmm_init() without /dev/kvm and without starting the event loop. */
static int vmm_init_no_kvm(struct vmm *vmm, char *err, size_t errlen)
{
	memset(vmm, 0, sizeof(*vmm));
	pthread_mutex_init(&vmm->lock, NULL);
	pthread_cond_init(&vmm->vm_stopped, NULL);
	vmm->kvm.fd = -1;
	if (sched_getaffinity(0, sizeof(vmm->host_cpus), &vmm->host_cpus) < 0) {
		snprintf(err, errlen, "sched_getaffinity: %s", strerror(errno));
		return -1;
	}
	vmm->nr_host_cpus = (unsigned)CPU_COUNT(&vmm->host_cpus);
	vmm->evl = evl_create();
	if (!vmm->evl) {
		snprintf(err, errlen, "cannot create the event loop");
		return -1;
	}
	return 0;
}

int testvm_create(struct testvm *t, const char *json, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	char *text = fill_defaults(json, err, errlen);
	if (!text)
		return -1;
	int rc = config_parse(text, "testvm", "/", &t->cfg, err, errlen);
	free(text);
	if (rc < 0)
		return -1;
	if (t->cfg.nr_vms > TESTVM_MAX) {
		snprintf(err, errlen, "test VM config: %u VMs, at most %d", t->cfg.nr_vms, TESTVM_MAX);
		config_free(&t->cfg);
		return -1;
	}
	if (vmm_init_no_kvm(&t->vmm, err, errlen) < 0) {
		config_free(&t->cfg);
		return -1;
	}
	/* The VMM builds them as for a run (vm_start starts no thread: a VM
	 * without KVM has no vCPUs), so devices see running VMs. */
	struct vmm_options opts = { .log_dir = "/tmp" };
	if (vmm_start(&t->vmm, &t->cfg, &opts, err, errlen) < 0) {
		testvm_destroy(t);
		return -1;
	}
	for (unsigned i = 0; i < t->vmm.nr_entries; i++) {
		struct vmm_entry *e = t->vmm.entries[i];
		if (!e->vm) {
			snprintf(err, errlen, "%s", e->error ? e->error : "a VM could not be built");
			testvm_destroy(t);
			return -1;
		}
		t->vm[t->nr++] = e->vm;
	}
	return 0;
}

void testvm_destroy(struct testvm *t)
{
	t->nr = 0;
	vmm_destroy(&t->vmm); /* and its VMs */
	config_free(&t->cfg);
}

struct vm *testvm_vm(struct testvm *t, const char *name)
{
	for (unsigned i = 0; i < t->nr; i++)
		if (!strcmp(t->vm[i]->name, name))
			return t->vm[i];
	return NULL;
}

int tv_events(struct testvm *t, int timeout_ms)
{
	int total = 0;
	for (int n; (n = evl_poll(t->vmm.evl, total ? 0 : timeout_ms)) > 0;)
		total += n;
	return total;
}

static void run_exit_hooks(struct vm *vm)
{
	for (unsigned h = 0; h < vm->nr_exit_hooks; h++)
		vm->exit_hook[h].fn(vm->exit_hook[h].arg);
}

static uint64_t guest_access(struct vm *vm, struct io_bus *bus, uint64_t addr, uint32_t len, bool is_write, uint64_t val)
{
	uint8_t data[8];
	if (len == 0 || len > 8)
		return 0;
	memcpy(data, &val, 8);
	if (!bus_dispatch(bus, addr, data, len, is_write) && !is_write)
		memset(data, 0xff, len);
	run_exit_hooks(vm);
	uint64_t out = 0;
	if (!is_write)
		memcpy(&out, data, len);
	return out;
}

uint64_t tv_pio_read(struct vm *vm, uint16_t port, uint32_t len)
{
	return guest_access(vm, &vm->pio, port, len, false, 0);
}

void tv_pio_write(struct vm *vm, uint16_t port, uint32_t len, uint64_t val)
{
	guest_access(vm, &vm->pio, port, len, true, val);
}

uint64_t tv_mmio_read(struct vm *vm, uint64_t addr, uint32_t len)
{
	return guest_access(vm, &vm->mmio, addr, len, false, 0);
}

void tv_mmio_write(struct vm *vm, uint64_t addr, uint32_t len, uint64_t val)
{
	guest_access(vm, &vm->mmio, addr, len, true, val);
}

static void cfg_select(struct vm *vm, unsigned slot, uint32_t off)
{
	tv_pio_write(vm, PCI_CONFIG_ADDRESS_PORT, 4, PCI_CONFIG_ENABLE | (slot & 0x1f) << 11 | (off & 0xfc));
}

uint32_t tv_cfg_read(struct vm *vm, unsigned slot, uint32_t off, uint32_t len)
{
	cfg_select(vm, slot, off);
	return (uint32_t)tv_pio_read(vm, (uint16_t)(PCI_CONFIG_DATA_PORT + (off & 3)), len);
}

void tv_cfg_write(struct vm *vm, unsigned slot, uint32_t off, uint32_t len, uint32_t val)
{
	cfg_select(vm, slot, off);
	tv_pio_write(vm, (uint16_t)(PCI_CONFIG_DATA_PORT + (off & 3)), len, val);
}

int tv_pci_find(struct vm *vm, uint16_t vendor, uint16_t device, unsigned n)
{
	for (unsigned slot = 0; slot < 32; slot++) {
		uint32_t id = tv_cfg_read(vm, slot, 0, 4);
		if (id == ((uint32_t)device << 16 | vendor) && n-- == 0)
			return (int)slot;
	}
	return -1;
}

uint64_t tv_pci_bar(struct vm *vm, unsigned slot, unsigned bar)
{
	uint32_t lo = tv_cfg_read(vm, slot, PCI_BAR0 + 4 * bar, 4);
	uint64_t addr = lo & ~0xfu;
	if (lo & PCI_BAR_MEM_64)
		addr |= (uint64_t)tv_cfg_read(vm, slot, PCI_BAR0 + 4 * bar + 4, 4) << 32;
	return addr;
}

uint8_t tv_pci_cap(struct vm *vm, unsigned slot, uint8_t id, uint8_t from)
{
	uint8_t p = from ? (uint8_t)tv_cfg_read(vm, slot, from + 1u, 1) : (uint8_t)tv_cfg_read(vm, slot, PCI_CAPABILITY_LIST, 1);
	for (int guard = 0; p && guard < 48; guard++) {
		if ((uint8_t)tv_cfg_read(vm, slot, p, 1) == id)
			return p;
		p = (uint8_t)tv_cfg_read(vm, slot, p + 1u, 1);
	}
	return 0;
}

void *tv_ram(struct vm *vm, uint64_t gpa, uint64_t len)
{
	return gm_ptr(&vm->mem, gpa, len);
}

static uint8_t *guest_slot_ptr(struct vm *vm, uint64_t gpa, uint64_t len, bool write)
{
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct gm_region *r = &vm->mem.region[i];
		if (r->present && (!write || !r->readonly) && gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len)
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

void *tv_guest_ptr(struct vm *vm, uint64_t gpa, uint64_t len)
{
	return guest_slot_ptr(vm, gpa, len, true);
}

const void *tv_guest_view(struct vm *vm, uint64_t gpa, uint64_t len)
{
	return guest_slot_ptr(vm, gpa, len, false);
}

uint64_t tv_interrupts(struct vm *vm)
{
	uint64_t total = 0;
	if (!vm->irq.recorded_irqfd)
		return 0;
	for (uint32_t gsi = 0; gsi < vm->irq.next_gsi && gsi < IRQ_MAX_ROUTES; gsi++) {
		uint64_t n;
		int fd = vm->irq.recorded_irqfd[gsi];
		if (fd >= 0 && read(fd, &n, sizeof(n)) == sizeof(n))
			total += n;
	}
	return total;
}

uint64_t tv_line_raises(struct vm *vm, unsigned gsi)
{
	return gsi < IRQ_IOAPIC_PINS ? __atomic_load_n(&vm->irq.recorded_line_raises[gsi], __ATOMIC_RELAXED) : 0;
}

/* The virtio driver. */

uint64_t tv_virtio_common_read(struct tv_virtio *d, uint32_t off, uint32_t len)
{
	return tv_mmio_read(d->vm, d->common + off, len);
}

void tv_virtio_common_write(struct tv_virtio *d, uint32_t off, uint32_t len, uint64_t val)
{
	tv_mmio_write(d->vm, d->common + off, len, val);
}

/* Where a virtio capability points: its BAR's address plus its offset. */
static uint64_t cap_address(struct vm *vm, unsigned slot, uint8_t cap)
{
	uint8_t bar = (uint8_t)tv_cfg_read(vm, slot, cap + 4u, 1);
	uint32_t off = tv_cfg_read(vm, slot, cap + 8u, 4);
	return tv_pci_bar(vm, slot, bar) + off;
}

int tv_virtio_init(struct tv_virtio *d, struct vm *vm, uint16_t type, unsigned n, uint64_t features,
		   uint64_t ring_gpa, uint16_t qsize, bool driver_ok)
{
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->slot = tv_pci_find(vm, PCI_VENDOR_ID_REDHAT_QUMRANET, (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + type), n);
	if (d->slot < 0)
		return -1;
	unsigned slot = (unsigned)d->slot;
	for (uint8_t cap = 0; (cap = tv_pci_cap(vm, slot, PCI_CAP_ID_VNDR, cap)) != 0;) {
		uint8_t cfg_type = (uint8_t)tv_cfg_read(vm, slot, cap + 3u, 1);
		if (cfg_type == VIRTIO_PCI_CAP_COMMON_CFG)
			d->common = cap_address(vm, slot, cap);
		else if (cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
			d->notify = cap_address(vm, slot, cap);
			d->notify_mult = tv_cfg_read(vm, slot, cap + 16u, 4);
		} else if (cfg_type == VIRTIO_PCI_CAP_ISR_CFG)
			d->isr = cap_address(vm, slot, cap);
		else if (cfg_type == VIRTIO_PCI_CAP_DEVICE_CFG)
			d->device = cap_address(vm, slot, cap);
	}
	uint8_t msix = tv_pci_cap(vm, slot, PCI_CAP_ID_MSIX, 0);
	if (!d->common || !d->notify || !msix)
		return -1;
	uint32_t table = tv_cfg_read(vm, slot, msix + PCI_MSIX_TABLE, 4);
	d->msix_table = tv_pci_bar(vm, slot, table & 7) + (table & ~7u);
	unsigned nvec = (tv_cfg_read(vm, slot, msix + PCI_MSIX_CTRL, 2) & PCI_MSIX_CTRL_SIZE_MASK) + 1u;
	tv_cfg_write(vm, slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	tv_cfg_write(vm, slot, msix + PCI_MSIX_CTRL, 2, PCI_MSIX_CTRL_ENABLE);
	for (unsigned v = 0; v < nvec; v++) {
		uint64_t e = d->msix_table + v * PCI_MSIX_ENTRY_SIZE;
		tv_mmio_write(vm, e + PCI_MSIX_ENTRY_ADDR_LO, 4, 0xfee00000u);
		tv_mmio_write(vm, e + PCI_MSIX_ENTRY_ADDR_HI, 4, 0);
		tv_mmio_write(vm, e + PCI_MSIX_ENTRY_DATA, 4, 0x40 + v);
		tv_mmio_write(vm, e + PCI_MSIX_ENTRY_CTRL, 4, 0);
	}

	tv_virtio_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	tv_virtio_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	for (uint32_t sel = 0; sel < 2; sel++) {
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 4, sel);
		d->features |= tv_virtio_common_read(d, VIRTIO_PCI_COMMON_DF, 4) << (32 * sel);
	}
	uint64_t want = (features & d->features) | (1ull << VIRTIO_F_VERSION_1);
	for (uint32_t sel = 0; sel < 2; sel++) {
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_GFSELECT, 4, sel);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(want >> (32 * sel)));
	}
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	tv_virtio_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, st);
	if (!(tv_virtio_common_read(d, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	d->nr_queues = (uint16_t)tv_virtio_common_read(d, VIRTIO_PCI_COMMON_NUMQ, 2);
	if (d->nr_queues > TV_MAX_QUEUES)
		return -1;
	tv_virtio_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, d->nr_queues);
	for (uint16_t q = 0; q < d->nr_queues; q++) {
		struct tv_queue *tq = &d->q[q];
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		uint16_t max = (uint16_t)tv_virtio_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2);
		tq->size = qsize < max ? qsize : max;
		tq->desc = ring_gpa + 0x10000ull * q;
		tq->avail = tq->desc + VRING_DESC_BYTES(tq->size);
		tq->used = (tq->avail + VRING_AVAIL_BYTES(tq->size) + 2 + 3) & ~3ull;
		void *ring = tv_ram(vm, tq->desc, 0x10000);
		if (!ring)
			return -1;
		memset(ring, 0, 0x10000);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, tq->size);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_DESCLO, 8, tq->desc);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, tq->avail);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_USEDLO, 8, tq->used);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, q);
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	}
	if (driver_ok) {
		tv_virtio_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, st | VIRTIO_STATUS_DRIVER_OK);
		if (tv_virtio_common_read(d, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
			return -1;
	}
	return 0;
}

uint16_t tv_virtio_post(struct tv_virtio *d, unsigned q, const struct tv_buf *bufs, unsigned n)
{
	struct tv_queue *tq = &d->q[q];
	if (!tq->size || n == 0)
		return 0;
	struct vring_desc *desc = tv_ram(d->vm, tq->desc, VRING_DESC_BYTES(tq->size));
	struct vring_avail *avail = tv_ram(d->vm, tq->avail, VRING_AVAIL_BYTES(tq->size));
	uint16_t head = tq->next_desc;
	for (unsigned i = 0; i < n; i++) {
		uint16_t at = (uint16_t)((head + i) % tq->size), next = (uint16_t)((head + i + 1) % tq->size);
		desc[at].addr = bufs[i].gpa;
		desc[at].len = bufs[i].len;
		desc[at].flags = (uint16_t)((bufs[i].writable ? VRING_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		desc[at].next = next;
	}
	tq->next_desc = (uint16_t)((head + n) % tq->size);
	avail->ring[tq->avail_idx % tq->size] = head;
	__atomic_store_n(&avail->idx, ++tq->avail_idx, __ATOMIC_RELEASE);
	return head;
}

void tv_virtio_notify(struct tv_virtio *d, unsigned q)
{
	tv_mmio_write(d->vm, d->notify + (uint64_t)q * d->notify_mult, 2, q);
}

int tv_virtio_used(struct tv_virtio *d, unsigned q, uint32_t *id, uint32_t *len)
{
	struct tv_queue *tq = &d->q[q];
	struct vring_used *used = tv_ram(d->vm, tq->used, VRING_USED_BYTES(tq->size));
	if (!used || __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE) == tq->used_seen)
		return 0;
	struct vring_used_elem *e = &used->ring[tq->used_seen % tq->size];
	*id = e->id;
	*len = e->len;
	tq->used_seen++;
	return 1;
}
