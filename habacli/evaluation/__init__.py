"""The standard evaluation protocol, in parts: :mod:`.protocol` trains and tests one network,
:mod:`.report` renders results (table, learning curves). The public entry points live in
:mod:`habacli.evaluate`."""
