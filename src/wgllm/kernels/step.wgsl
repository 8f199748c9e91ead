// The per-submission dynamic parameters, shared by every kernel of a forward pass.
// Written with queue.write_buffer before each submission (see wgllm.runtime).
// T: token rows in this pass (<= the T_max the dispatches were built for).
// A pass of one sequence (batched == 0): its rows sit at positions pos .. pos + T - 1 of the
// sequence in KV-cache slot `slot`. A batched pass (batched == 1: one decode row per sequence,
// continuous batching): row t belongs to slot rows[t].x at position rows[t].y (pos is 0).
// rows has room for MAX_BATCH rows (kernels/constants.py MAX_BATCH, STEP_BYTES).
struct Step { T: u32, pos: u32, slot: u32, batched: u32, rows: array<vec4<u32>, 64> }
