"""FastAPI app: API routes, domain logic and persistence."""
