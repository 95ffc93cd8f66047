"""pgan: Part-Guided Attention Network toolkit for vehicle re-identification.

Importing the package has no side effects: nothing is registered, downloaded or
initialised until a function is called.
"""

__version__ = "0.1.0"
