/* MSI-X for a PCI device: the capability, the vector table and pending-bit
 * array in a BAR, and delivery through one irqfd per vector. */
#ifndef FERRY_PCI_MSIX_H
#define FERRY_PCI_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct pci_device;

#define MSIX_MAX_VECTORS 64

struct msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;
	int gsi;        /* KVM GSI routed to (addr, data) while unmasked */
	int efd;        /* irqfd bound to gsi */
	bool pending;   /* raised while masked */
	bool routed;    /* the GSI route matches the entry */
};

struct msix {
	struct pci_device *pdev;
	pthread_mutex_t lock;
	unsigned nr;
	uint8_t cap;    /* config offset of the capability */
	uint16_t control;  /* copy of its control word, read under lock */
	struct msix_vector v[MSIX_MAX_VECTORS];
};

/* Adds the capability (table at table_off and PBA at pba_off in BAR bar)
 * and one irqfd per vector. */
int msix_init(struct msix *m, struct pci_device *pdev, unsigned nr, unsigned bar,
	      uint32_t table_off, uint32_t pba_off, char *err, size_t errlen);
void msix_destroy(struct msix *m);

/* BAR accesses to the table (offset from table start) and the PBA. */
void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
/* Call after any config write touching the capability's control word. */
void msix_control_written(struct msix *m);

/* Raises vector; if it is masked, remembers it as pending. false if the
 * vector does not exist or MSI-X is disabled. */
bool msix_notify(struct msix *m, uint16_t vector);
bool msix_enabled(struct msix *m);

#endif
