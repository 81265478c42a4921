"""Operator tools: `doctor`, the durability checks, the embedded Redis, the demo.

They sit beside the layers, not in them: each reads and acts through the Inspector.
"""
