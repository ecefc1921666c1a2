"""IDE: the PIIX3 IDE function with its two ATA channels, bus-master DMA and hard disks."""
