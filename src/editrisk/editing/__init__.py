"""Shared edit machinery: prompts and positions, context prefixes, keys, target optimisation,
covariance statistics and the least-squares solvers. Every language editor is built on these."""
