"""What the faces share: settings (read once, passed down), the wiring of the parts, and the
offline analysis of a recorded video. Below api/, workers/ and the CLI; imports none of them."""
