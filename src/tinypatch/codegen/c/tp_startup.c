/* Minimal Cortex-M startup: vector table, stack painting, .data/.bss initialisation, FPU/MVE
 * enable, main(), exit code through semihosting. Faults end the run with exit code 3. */
#include <stdint.h>

#include "tp_mcu.h"
#include "tp_semihost.h"

int main(void);
void Reset_Handler(void);

static void fault(void)
{
    tp_sh_puts("tinypatch: processor fault\n");
    tp_sh_exit(3);
}

typedef void (*vector_t)(void);
__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)&__stack_top__, Reset_Handler, fault, fault, fault, fault, fault, 0, 0, 0, 0,
    fault, fault, 0, fault, fault,
};

__attribute__((noreturn, used)) static void reset_c(void)
{
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10/CP11 */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    volatile uint32_t *src = &__data_load__, *dst = &__data_start__;
    while (dst < &__data_end__) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    tp_sh_exit(main());
}

/* Paints the whole stack before anything uses it (the stack high-water mark is then exact),
 * then continues in C. */
__attribute__((naked)) void Reset_Handler(void)
{
    __asm__ volatile(
        "ldr r0, =__stack_limit__\n\t"
        "ldr r1, =__stack_top__\n\t"
        "ldr r2, =0xA5A5A5A5\n"
        "1:\n\t"
        "cmp r0, r1\n\t"
        "bhs 2f\n\t"
        "str r2, [r0], #4\n\t"
        "b 1b\n"
        "2:\n\t"
        "b reset_c\n\t"
        ".ltorg");
}
