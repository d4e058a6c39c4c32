"""The outbox: what services record happened, in the transaction of the data it is about.

Services write typed events (``events``) with ``record``; workflows read them from the table
(``models``), react, and mark each completed in the transaction of the reaction.
"""
