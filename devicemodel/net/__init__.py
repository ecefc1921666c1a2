"""Network backends (QEMU's ``-netdev``) and how a NIC is joined to one."""
