"""Serving (chapter 08): a scheduler shared by the engine and the simulator, a continuous-batching
engine over the paged cache, request streams and latency metrics.

- :mod:`kvlib.serve.scheduler`: waiting/running/swapped queues, token budget, chunked prefill, preemption;
- :mod:`kvlib.serve.engine`: requests, sampling, one scheduling iteration per step, streaming;
- :mod:`kvlib.serve.workload`: real prompts with log-normal lengths and Poisson arrivals;
- :mod:`kvlib.serve.metrics`: TTFT, TPOT, inter-token latency and their percentiles;
- :mod:`kvlib.serve.baselines`: Hugging Face's static and continuous batching on the same workload.

``python -m kvlib.bench serve`` runs the engine against both baselines side by side.
"""
