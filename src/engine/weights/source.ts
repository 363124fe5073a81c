/** A pretrained weight as read from a file, before it is mapped onto a network. */
export interface KerasWeight {
  /** Keras weight name, e.g. 'block1_conv1/kernel:0' or 'conv_dw_1/depthwise_kernel'. */
  name: string;
  /** The Keras layer it belongs to. */
  layer: string;
  shape: number[];
  data: Float32Array;
}
