/** TUN devices (the test bed's userspace delay line); the one ioctl they need. */
import fs from 'node:fs';
import { check, libc } from './libc';

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** struct ifreq: the name, then the flags (a short) at offset 16; 40 bytes on 64-bit Linux. */
const IFREQ_SIZE = 40;

/** Open (creating if needed) the TUN device `name`, without packet info headers; returns its fd. */
export function openTun(name: string): number {
  const fd = fs.openSync('/dev/net/tun', 'r+');
  const req = Buffer.alloc(IFREQ_SIZE);
  req.write(name, 0, 15, 'ascii');
  req.writeUInt16LE(IFF_TUN | IFF_NO_PI, 16);
  try {
    check(`TUNSETIFF ${name}`, libc.ioctl(fd, TUNSETIFF, req) as number);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}
