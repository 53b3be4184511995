"""Built-in latent-direction plugins (one module each), registered in ``DIRECTIONS``."""
