"""The example project's own code: the data contract of the German credit data set.

This package is what a team replaces with its own; `mlgate` itself stays generic.
"""
