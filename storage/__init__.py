"""nova-sink storage: table models, engines, every SQL statement and the migrations.

This package never imports ``receiver``.
"""
