// The per-submission dynamic parameters, shared by every kernel of a forward pass.
// Written with queue.write_buffer before each submission (see wgllm.runtime).
// T: tokens in this pass (<= the T_max the dispatches were built for),
// pos: position of the first of them (tokens before it are in the KV cache).
struct Step { T: u32, pos: u32, _pad0: u32, _pad1: u32 }
