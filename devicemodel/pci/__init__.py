"""The PCI bus of the PC: configuration mechanism #1, devices with their configuration
space and BARs, INTx routing through the PIIX3, MSI and MSI-X."""
