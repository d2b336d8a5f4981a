"""Job vocabulary shared by workers, engines and the store. Pure."""
