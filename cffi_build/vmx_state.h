/* Guest/host state transfer between the processor and the VMCS. */
#ifndef PYHV_VMX_STATE_H
#define PYHV_VMX_STATE_H
void guest_segment_from_vmcs(cpu_t *cpu, int s, seg_t *out);
void load_guest_state(cpu_t *cpu);
void save_guest_state(cpu_t *cpu);
void load_host_state(cpu_t *cpu);
void load_vmcs_controls(cpu_t *cpu);
uint64_t guest_context_enter(cpu_t *cpu);
void guest_context_leave(cpu_t *cpu, uint64_t host_rsp);
#endif
