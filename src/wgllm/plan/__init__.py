"""Memory planning: model layouts, memory estimates, adapter budgets, the planner, the catalog.

Nothing in this package imports `wgpu`: it runs and tests without an adapter.
"""
