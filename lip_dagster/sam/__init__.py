"""The SAM contract (DESIGN §6): what the security analytics tool needs from each
source's bucket, key and queue, built by ``provision`` and verified by ``checks``.

    sources.py    the declared sources, read from the Dagster definitions
    target.py     one source's AWS stack as the SAM sees it (names, cached reads)
    policy.py     conservative IAM policy evaluation
    grants.py     the statements LIP writes and the questions the checks ask
    content.py    one pass over a partition's objects
    checks.py     the named checks and their outcomes
    provision.py  ``lip provision``
    issues.py     one GitHub issue per failing source
    cli.py        ``lip provision`` and ``lip check``
"""
