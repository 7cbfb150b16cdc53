"""One runner class per backend behind the ``Runner`` Protocol (see ``base``); modules load lazily."""
