// Written by tools/pytorch-digits.py (torch 2.5.1+cu124): the logits PyTorch computed for records
// 0..7 of the digits (pixels / 16) with the network in pytorch-digits-64-16-10.safetensors.
// Its accuracy over all 1797 records: 0.9705.
pub const PYTORCH_LOGITS: [[f32; 10]; 8] = [
    [f32::from_bits(0x4126dcf5), f32::from_bits(0xc0bf5239), f32::from_bits(0xc0770b25), f32::from_bits(0xc0cf8ea3), f32::from_bits(0xc00f1c07), f32::from_bits(0x3ef1cc16), f32::from_bits(0xc013b520), f32::from_bits(0xbfdfe43b), f32::from_bits(0x3f4293c7), f32::from_bits(0x4084d99a)],
    [f32::from_bits(0xc11953a9), f32::from_bits(0x411e7fc6), f32::from_bits(0xbedba6e2), f32::from_bits(0xbd95d566), f32::from_bits(0x3ff54514), f32::from_bits(0xc060dcb0), f32::from_bits(0xbf0407c8), f32::from_bits(0xbfcbbe8f), f32::from_bits(0x40446b47), f32::from_bits(0xc01e98a8)],
    [f32::from_bits(0xc07ae3d0), f32::from_bits(0x40c32883), f32::from_bits(0x410c70b2), f32::from_bits(0xbf9dc95c), f32::from_bits(0xc0453b86), f32::from_bits(0xc104ec90), f32::from_bits(0x3f1d409d), f32::from_bits(0xc03c8f92), f32::from_bits(0x40ad3006), f32::from_bits(0xc0991918)],
    [f32::from_bits(0xc101eaeb), f32::from_bits(0x3ec815f3), f32::from_bits(0x3f1f502e), f32::from_bits(0x411212f9), f32::from_bits(0xc118e4f8), f32::from_bits(0x40468bab), f32::from_bits(0xc0797a51), f32::from_bits(0xc06779ba), f32::from_bits(0x3fcf4b21), f32::from_bits(0x4053347f)],
    [f32::from_bits(0x3f68e888), f32::from_bits(0x4067e8f3), f32::from_bits(0xc1133196), f32::from_bits(0xc11703ee), f32::from_bits(0x412a014d), f32::from_bits(0xc01919bb), f32::from_bits(0x40c4bfba), f32::from_bits(0x3ee12e76), f32::from_bits(0x3fe670ec), f32::from_bits(0xc0555280)],
    [f32::from_bits(0xc02acd96), f32::from_bits(0x3ff169eb), f32::from_bits(0xc0890a56), f32::from_bits(0x4030d92e), f32::from_bits(0xc0ac9703), f32::from_bits(0x3fd48b80), f32::from_bits(0xc0856a2d), f32::from_bits(0xc0b0bd2b), f32::from_bits(0x3f930362), f32::from_bits(0x40ca2807)],
    [f32::from_bits(0xbf638cd2), f32::from_bits(0x407204b0), f32::from_bits(0xc02452ee), f32::from_bits(0xc0dfc8dd), f32::from_bits(0x4052c2b6), f32::from_bits(0xbe8a6c10), f32::from_bits(0x4119315e), f32::from_bits(0xc0de3946), f32::from_bits(0x4088983f), f32::from_bits(0xc0a9dab0)],
    [f32::from_bits(0xc0e9609d), f32::from_bits(0xbf4cb7f3), f32::from_bits(0xbfd429e8), f32::from_bits(0x404a5843), f32::from_bits(0xc020a785), f32::from_bits(0x3f2a5af7), f32::from_bits(0xc103fee0), f32::from_bits(0x410b4bb2), f32::from_bits(0x3fbf1bed), f32::from_bits(0x3f6be795)],
];
