#include "user.h"
#include "desc.h"

void user_call_enter(void (*fn)(void), uint32_t *stack, uint32_t eflags);
void user_return(void);
void user_return_gate(void);

void user_call(void (*fn)(void), void *stack_top, uint32_t eflags)
{
    uint32_t *sp = (uint32_t *)stack_top;
    *--sp = (uint32_t)user_return;
    idt_set(USER_RETURN_VECTOR, user_return_gate, SEL_KCODE, GATE_INT32 | GATE_DPL(3));
    user_call_enter(fn, sp, eflags);
}
