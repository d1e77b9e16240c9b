"""The probe: N identical tool-use conversations per target, classified and written down.

* :mod:`callproof.probe.config`: ``callproof.toml`` (``load_config``);
* :mod:`callproof.probe.scenarios`: what is sent;
* :mod:`callproof.probe.runner`: the run itself (``results.jsonl``, reports, history);
* ``stats``, ``summary``, ``store``: statistics, the summary and the history database.
"""
