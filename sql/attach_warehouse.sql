-- attach the warehouse file read-only as catalog "warehouse" (a fresh instance: sees the live file).
attach $path as warehouse (read_only)
