"""consensus: the proof-of-useful-work seal engine, the job registry, rewards and mining.

Map of the package, in the order a block flows through it:

* ``difficulty``  retarget rule (every block, toward the genesis block time, clamped).
* ``errors``      one typed error per rule of the seal, the job registry and the payload.
* ``params``      reserved addresses, job-id ranges and consensus constants; genesis-derived config.
* ``registry``    the job registry: storage layout, the precompile at REGISTRY_ADDRESS, ABI.
* ``blobs``       LevelDB-backed content-addressed blobs (checkpoint states, datasets).
* ``jobs``        resolving a job's spec, dataset and checkpoint state for miners and validators.
* ``payload``     the block's work payload (RLP): step hashes, challenged states, new checkpoint.
* ``seal``        sealing (miner side) and ``verify_trajectory`` (validator side), pure functions.
* ``rewards``     block reward + job fee accounting, deferred crediting for coinbase maturity.
* ``engine``      PouwEngine: the SealEngine that chain/ calls at each validation stage.
* ``miner``       the mining loop: template, job choice, trainer, seal, import, restart on new head.
"""
