-- make the attached warehouse the default catalog, so queries name tables without a prefix.
use warehouse
