"""The browser tier: a package, so that its package-scoped browser and server end when the tier does."""
