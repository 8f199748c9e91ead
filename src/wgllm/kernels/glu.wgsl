// The activation of a GLU's gate, by the kernel's GLU constant (1: silu, 2: GELU in its tanh
// form, written as the equal g * sigmoid(2 sqrt(2/pi) (g + 0.044715 g^3)), which cannot overflow).
fn glu_act(g: vec4<f32>) -> vec4<f32> {
    if (GLU == 2u) {
        return g / (1.0 + exp(-1.5957691216057308 * (g + 0.044715 * g * g * g)));
    }
    return g / (1.0 + exp(-g));
}
