"""orderbot: an example LangGraph application over PostgreSQL checkpoints.

Two graphs (:mod:`orderbot.graphs`) over the app's own state types
(:mod:`orderbot.models`); :mod:`orderbot.seed` leaves threads in known shapes.
The code runs unchanged on langgraph 0.2.56 through 1.2.x.
"""

__version__ = "0.1.0"
