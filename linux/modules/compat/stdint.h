/* The kernel has no <stdint.h>; ferry's shared device headers
 * (include/ferry/ headers) include it for uint32_t and friends, which
 * <linux/types.h> also defines. So the modules build against those headers
 * as they are. */
#ifndef FERRY_COMPAT_STDINT_H
#define FERRY_COMPAT_STDINT_H
#include <linux/types.h>
#endif
