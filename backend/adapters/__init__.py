"""Model adapters: small classes that hold weights and run one model. They import only `backend.core`."""
