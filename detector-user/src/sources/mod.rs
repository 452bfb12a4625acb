//! Where events come from: the kernel (`kernel`), or a recording (`replay`).
