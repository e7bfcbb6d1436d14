/* The FADT's hardware-reduced sleep control and status registers (ports
 * FERRY_ACPI_SLEEP_CTL_PORT and _STS_PORT): entering S5 powers the VM off
 * with status 0, as an ACPI guest's shutdown does. */
#ifndef FERRY_ACPI_PM_H
#define FERRY_ACPI_PM_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* What a write of v to the sleep control register asks for. */
enum acpi_sleep_request { ACPI_SLEEP_NONE, ACPI_SLEEP_S5, ACPI_SLEEP_UNSUPPORTED };
enum acpi_sleep_request acpi_sleep_decode(uint8_t v);

int acpi_pm_create(struct vm *vm, char *err, size_t errlen);

#endif
