#include "devices/device.h"

#include <stdarg.h>
#include <stdio.h>

#include "vmm/vm.h"

void device_reject(struct device *dev, const char *fmt, ...)
{
	atomic_fetch_add(&dev->ctr.rejected, 1);
	if (!log_limit_ok(&dev->reject_log))
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn(dev->vm ? dev->vm->name : NULL, "%s: rejected: %s%s", dev->name, msg,
		 atomic_load(&dev->reject_log.count) == LOG_LIMIT_BURST ? " (further rejections only counted)" : "");
}
