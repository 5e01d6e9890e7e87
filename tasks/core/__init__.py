"""What every stage uses: the contract (table and column names), errors, settings (the data home), durable
writes, SQL loading, injected faults, the environment's faults and the writer lock. Imports no other group."""
