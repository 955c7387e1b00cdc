/* What the Cortex-M startup code and the runner share: linker symbols and the stack paint. */
#ifndef TP_MCU_H
#define TP_MCU_H

#include <stdint.h>

#define TP_STACK_PAINT 0xA5A5A5A5u /* every stack word holds it at reset */

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_limit__, __stack_top__;

#endif
