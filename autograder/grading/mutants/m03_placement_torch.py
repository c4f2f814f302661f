"""Planted bugs for 03_placement_torch: the classic mistakes of fusing BN into modules and of building BN blocks."""

from . import plant, variant

FUSE, FOLD, BLOCK, PREACT = "fuse", "fold_all", "conv_bn_relu", "preact"
SCALE = "return (gamma / torch.sqrt(bn.running_var + bn.eps)).detach(), beta.detach()"
CONV_BIAS = "        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)\n    return fused\n    ### END SOLUTION\n\n\ndef fuse_linear_bn"
CONV_WEIGHT = "fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))"
LINEAR_WEIGHT = "fused.weight.copy_(linear.weight * scale.reshape(-1, 1))"
CONV_COPY = "    scale, shift = bn_scale_shift(bn)\n    fused = copy.deepcopy(conv)"

MUTANTS = [
    plant("fused_bias_without_running_mean", "fold_mean_term_missing",
          (FUSE, CONV_BIAS, CONV_BIAS.replace("(bias - bn.running_mean) * scale", "bias * scale"))),
    plant("conv_bias_dropped", "fold_bias_dropped",
          (FUSE, "    bias = torch.zeros_like(bn.running_mean) if conv.bias is None else conv.bias.detach()",
           "    bias = torch.zeros_like(bn.running_mean)")),
    plant("eps_outside_root", "eps_outside_root",
          (FUSE, SCALE, "return (gamma / (torch.sqrt(bn.running_var) + bn.eps)).detach(), beta.detach()")),
    plant("scale_inverted", "fold_scale_inverted",
          (FUSE, SCALE, "return (gamma * torch.sqrt(bn.running_var + bn.eps)).detach(), beta.detach()")),
    plant("hyperparameters_lost", "fuse_hyperparameters_lost",
          (FUSE, CONV_COPY,
           "    scale, shift = bn_scale_shift(bn)\n"
           "    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, groups=conv.groups,\n"
           "                      device=conv.weight.device, dtype=conv.weight.dtype)")),
    plant("groups_ignored", "fuse_hyperparameters_lost",
          (FUSE, CONV_COPY,
           "    scale, shift = bn_scale_shift(bn)\n"
           "    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,\n"
           "                      padding=conv.padding, dilation=conv.dilation,\n"
           "                      device=conv.weight.device, dtype=conv.weight.dtype)")),
    plant("bias_cast_to_float32", "or a cast such as .float()",
          (FUSE, CONV_BIAS, CONV_BIAS.replace("nn.Parameter((bias - bn.running_mean) * scale + shift)",
                                              "nn.Parameter(((bias - bn.running_mean) * scale + shift).float())"))),
    plant("given_conv_modified", "modules_modified",
          (FUSE, CONV_COPY, "    scale, shift = bn_scale_shift(bn)\n    fused = conv")),
    plant("linear_input_axis_scaled", "fold_input_axis_scaled",
          (FUSE, LINEAR_WEIGHT, "fused.weight.copy_(linear.weight * scale.reshape(1, -1))")),
    plant("affine_false_not_handled", "affine=False",
          (FUSE, "gamma = bn.weight if bn.affine else torch.ones_like(bn.running_mean)", "gamma = bn.weight")),
    plant("training_mode_fused", "fuse_in_training_mode",
          (FUSE, "    if bn.training:\n", "    if False:\n")),
    plant("nested_sequential_missed", "nested_sequential_missed",
          (FOLD, "            layers.append(folded_sequential(child))", "            layers.append(child)")),
    plant("conv_with_bias", "conv_bias_before_bn",
          (BLOCK, "padding=kernel_size // 2, bias=False)", "padding=kernel_size // 2)")),
    plant("no_padding", "padding_not_same", (BLOCK, "padding=kernel_size // 2, bias=False)", "bias=False)")),
    plant("identity_missing", "preact_identity_missing",
          (PREACT, "return x + self.conv2(torch.relu(self.bn2(branch)))",
           "return self.conv2(torch.relu(self.bn2(branch)))")),
    plant("post_activation_order", "preact_order",
          (PREACT, "        branch = self.conv1(torch.relu(self.bn1(x)))\n"
                   "        return x + self.conv2(torch.relu(self.bn2(branch)))",
           "        branch = torch.relu(self.bn1(self.conv1(x)))\n"
           "        return x + torch.relu(self.bn2(self.conv2(branch)))")),
    plant("quiz_wrong_answer", "is not the right answer", ("quiz_answers", 'answer_q2 = "c"', 'answer_q2 = "a"')),
]

# A cheat: replacing a check passes the visible test, but the hidden tests re-import the real checks.
MUTANTS += [
    plant("cheat_replaces_a_check", "not implemented yet",
          (BLOCK, "    return nn.Sequential(nn.Conv2d(",
           "    raise NotImplementedError()\n    return nn.Sequential(nn.Conv2d("),
          (BLOCK, "nn.BatchNorm2d(out_ch), nn.ReLU())\n    ### END SOLUTION",
           "nn.BatchNorm2d(out_ch), nn.ReLU())\n    ### END SOLUTION\n\n\n"
           "checks.check_conv_bn_relu = lambda *args, **kwargs: None")),
]

# Correct submissions written differently: each must keep full marks.
MUTANTS += [
    # torch's own fusers used for the arithmetic, with the checks the exercise asks for.
    variant("torch_fusion_weights",
            (FUSE, CONV_WEIGHT + "\n        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)",
             "fused.weight, fused.bias = torch.nn.utils.fusion.fuse_conv_bn_weights(\n"
             "            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)")),
]
