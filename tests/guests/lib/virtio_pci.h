/* virtio-pci (modern) register layout for the test guests' polling drivers (virtio 1.x 4.1). */
#ifndef GUEST_VIRTIO_PCI_H
#define GUEST_VIRTIO_PCI_H

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_DEVICE_BLK    0x1042
#define PCI_DEVICE_RNG    0x1044

/* Common configuration (struct virtio_pci_common_cfg) offsets */
#define CC_DFSELECT    0x00
#define CC_DF          0x04
#define CC_GFSELECT    0x08
#define CC_GF          0x0c
#define CC_STATUS      0x14
#define CC_Q_SELECT    0x16
#define CC_Q_SIZE      0x18
#define CC_Q_MSIX      0x1a
#define CC_Q_ENABLE    0x1c
#define CC_Q_NOFF      0x1e
#define CC_Q_DESC      0x20
#define CC_Q_DRIVER    0x28
#define CC_Q_DEVICE    0x30

/* Device status bits */
#define ST_ACK         0x01
#define ST_DRIVER      0x02
#define ST_DRIVER_OK   0x04
#define ST_FEATURES_OK 0x08
#define ST_NEEDS_RESET 0x40

#define F_VERSION_1    (1u << 0)    /* high feature word (bit 32) */

#endif
