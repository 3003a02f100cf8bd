"""The latent wire: learned soft-prompt messages that several frozen LLMs decode (docs/latent.md)."""
