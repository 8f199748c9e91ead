"""The OpenAI-compatible Python API: request validation (`protocol`), response shapes (`types`),
generation of choices with stop sequences, logprobs and grammars (`generation`), `Engine` and
`AsyncEngine`. Imported lazily from `wgllm` (see `wgllm.Engine`)."""
