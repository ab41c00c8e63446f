//! gala-topo: vertical and horizontal topology from the record stream.
