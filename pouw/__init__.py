"""pouw: the useful-work engine (exact, verifiable ML training).

Map of the package, in the order a step flows through it:

* ``errors``     PouwError and its subclasses (SpecError, StateError, DatasetError, ...).
* ``spec``       JobSpec: a job as declarative data; canonical bytes and spec hash; limits.
* ``datasets``   int8 datasets in safetensors (or npz without pickle), named by keccak hash.
* ``blobstore``  content-addressed blob storage (memory, directory; LevelDB in the node).
* ``prng``       keccak counter-mode PRNG: weight init and batch indices, never torch/numpy RNG.
* ``arith``      exact integer arithmetic: int8 GEMMs, shifts, rounding; Backend selection.
* ``families``   task catalogue (mlp, cnn): init_state, the exact step, logits, cost model.
* ``state``      canonical state bytes and state_hash (h_i).
* ``engine``     compute_step: batch of step i from the seal seed, then the family's step.
* ``commit``     seal seed, accumulator a_i, ticket test, challenge indices.
* ``trainer``    the miner's loop: steps, records (i, h_i, a_i), stop, tickets, kept states.
* ``verifier``   sampled recomputation of claimed steps; typed verdicts, never raises on peer data.
* ``evaluate``   held-out metrics with the same exact arithmetic; export to float torch.
* ``telemetry``  NVML GPU snapshot (or NoGpu with the reason).
"""
