#include "devices/serial.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "vmm/clock.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

/* Register offsets from the base port. */
enum {
	UART_RBR_THR = 0, /* DLL when LCR.DLAB */
	UART_IER = 1,     /* DLM when LCR.DLAB */
	UART_IIR_FCR = 2,
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};
#define UART_LCR_DLAB   0x80
#define UART_IER_THRI   0x02
#define UART_IIR_NONE   0x01
#define UART_IIR_THRI   0x02
#define UART_LSR_THRE   0x20
#define UART_LSR_TEMT   0x40
#define UART_MCR_LOOP   0x10
#define UART_MSR_IDLE   0xb0  /* DCD, DSR, CTS */

#define LINE_MAX_BYTES 512

struct serial {
	struct device dev;
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm;
	bool thr_irq_pending;  /* the "transmitter empty" interrupt */
	int irq_level;         /* last level driven on IRQ 4 */
	FILE *log;
	bool to_terminal;
	char line[LINE_MAX_BYTES];
	size_t line_len;
	/* A guest can print forever: the log (and its terminal copy) stop at
	 * log_max bytes, and what follows is only counted. */
	uint64_t log_max, logged, dropped;
	bool log_failed;
};

static void flush_line(struct serial *s)
{
	if (s->line_len == 0)
		return;
	if (s->logged + s->line_len > s->log_max) {
		if (s->logged <= s->log_max) {
			char note[128];
			int n = snprintf(note, sizeof(note), "[ferry: console output past %llu KiB is dropped]\n",
					 (unsigned long long)(s->log_max >> 10));
			if (s->log && fwrite(note, 1, (size_t)n, s->log) == (size_t)n)
				fflush(s->log);
			if (s->to_terminal)
				fprintf(stdout, "[%s] %s", s->dev.vm->name, note);
			log_warn(s->dev.vm->name, "console output reached %llu KiB; the rest is dropped (counted)",
				 (unsigned long long)(s->log_max >> 10));
			s->logged = s->log_max + 1;
		}
		s->dropped += s->line_len;
		s->line_len = 0;
		return;
	}
	s->logged += s->line_len;
	if (s->log && !s->log_failed &&
	    (fwrite(s->line, 1, s->line_len, s->log) != s->line_len || fflush(s->log) != 0)) {
		s->log_failed = true; /* e.g. the disk is full: say so once, keep the VM running */
		log_error(s->dev.vm->name, "cannot write its console log: %s", strerror(errno));
	}
	if (s->to_terminal) {
		/* One write per line, so lines of different VMs do not mix. */
		bool nl = s->line[s->line_len - 1] == '\n';
		fprintf(stdout, "[%s] %.*s%s", s->dev.vm->name, (int)s->line_len, s->line, nl ? "" : "\n");
		fflush(stdout);
	}
	s->line_len = 0;
}

static void update_irq(struct serial *s)
{
	int level = (s->ier & UART_IER_THRI) && s->thr_irq_pending;
	if (level == s->irq_level)
		return; /* polled output never needs the line: spare the ioctl */
	s->irq_level = level;
	irq_line(&s->dev.vm->irq, SERIAL_COM1_IRQ, level);
	if (level)
		atomic_fetch_add(&s->dev.ctr.interrupts, 1);
}

static void transmit(struct serial *s, uint8_t ch)
{
	struct vm *vm = s->dev.vm;
	unsigned long long zero = 0;
	atomic_compare_exchange_strong(&vm->t_first_output_ns, &zero, clock_ns());
	atomic_fetch_add(&s->dev.ctr.bytes, 1);
	if (ch == '\r')
		return;
	s->line[s->line_len++] = (char)ch;
	if (ch == '\n' || s->line_len == LINE_MAX_BYTES)
		flush_line(s);
}

static void serial_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		device_reject(&s->dev, "%u-byte access at offset %llu (the UART has byte registers)", len,
			      (unsigned long long)off);
		return;
	}
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & UART_LCR_DLAB;
	if (is_write) {
		uint8_t v = data[0];
		switch (off) {
		case UART_RBR_THR:
			if (dlab) {
				s->dll = v;
			} else {
				if (!(s->mcr & UART_MCR_LOOP))
					transmit(s, v);
				s->thr_irq_pending = true; /* sent at once: empty again */
				update_irq(s);
			}
			break;
		case UART_IER:
			if (dlab) {
				s->dlm = v;
			} else {
				bool thri_on = !(s->ier & UART_IER_THRI) && (v & UART_IER_THRI);
				s->ier = v & 0x0f;
				if (thri_on)
					s->thr_irq_pending = true;
				update_irq(s);
			}
			break;
		case UART_IIR_FCR:
			break; /* FIFO control: nothing to do without input */
		case UART_LCR:
			s->lcr = v;
			break;
		case UART_MCR:
			s->mcr = v & 0x1f;
			break;
		case UART_SCR:
			s->scr = v;
			break;
		default:
			break; /* LSR and MSR are read-only */
		}
	} else {
		uint8_t v = 0;
		switch (off) {
		case UART_RBR_THR:
			v = dlab ? s->dll : 0; /* no input */
			break;
		case UART_IER:
			v = dlab ? s->dlm : s->ier;
			break;
		case UART_IIR_FCR:
			if ((s->ier & UART_IER_THRI) && s->thr_irq_pending) {
				v = UART_IIR_THRI;
				s->thr_irq_pending = false; /* reading IIR acknowledges it */
				update_irq(s);
			} else {
				v = UART_IIR_NONE;
			}
			v |= 0xc0; /* FIFOs enabled */
			break;
		case UART_LCR:
			v = s->lcr;
			break;
		case UART_MCR:
			v = s->mcr;
			break;
		case UART_LSR:
			v = UART_LSR_THRE | UART_LSR_TEMT;
			break;
		case UART_MSR:
			v = (s->mcr & UART_MCR_LOOP) ? (uint8_t)((s->mcr & 0x0f) << 4) : UART_MSR_IDLE;
			break;
		case UART_SCR:
			v = s->scr;
			break;
		}
		data[0] = v;
	}
	pthread_mutex_unlock(&s->lock);
}

static void serial_destroy(struct device *dev)
{
	struct serial *s = (struct serial *)dev;
	flush_line(s);
	if (s->log)
		fclose(s->log);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void serial_counters_json(struct device *dev, cJSON *o)
{
	struct serial *s = (struct serial *)dev;
	pthread_mutex_lock(&s->lock);
	cJSON_AddNumberToObject(o, "logged_bytes", (double)(s->logged > s->log_max ? s->log_max : s->logged));
	cJSON_AddNumberToObject(o, "dropped_bytes", (double)s->dropped);
	pthread_mutex_unlock(&s->lock);
}

static const struct device_ops serial_ops = {
	.counters_json = serial_counters_json,
	.destroy = serial_destroy,
};

struct serial *serial_create(struct vm *vm, const char *log_path, bool to_terminal, char *err, size_t errlen)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(s->dev.name, sizeof(s->dev.name), "serial");
	s->dev.ops = &serial_ops;
	s->dev.vm = vm;
	pthread_mutex_init(&s->lock, NULL);
	s->to_terminal = to_terminal;
	s->log_max = vm->cfg->console_log_max_kib << 10;
	if (log_path && *log_path) {
		/* A restarted VM adds to the log of its earlier runs (the crash
		 * is worth reading), all of them within the one cap. */
		s->log = fopen(log_path, vm->restarts ? "a" : "w");
		long size = s->log && vm->restarts ? ftell(s->log) : 0;
		if (!s->log || size < 0) {
			snprintf(err, errlen, "cannot create console log %s: %s", log_path, strerror(errno));
			if (s->log)
				fclose(s->log);
			pthread_mutex_destroy(&s->lock);
			free(s);
			return NULL;
		}
		s->logged = (uint64_t)size;
	}
	if (bus_register(&vm->pio, SERIAL_COM1_PORT, 8, serial_io, s, &s->dev) < 0) {
		snprintf(err, errlen, "serial: I/O ports 0x%x-0x%x already taken", SERIAL_COM1_PORT, SERIAL_COM1_PORT + 7);
		serial_destroy(&s->dev);
		return NULL;
	}
	vm_add_device(vm, &s->dev);
	return s;
}
