"""The team's own components: a package named `components`, as many Pulumi projects have one.

llmfleet installs its components as `llmfleet.components`, so this package and llmfleet's are two
different modules and both import side by side in __main__.py.
"""
